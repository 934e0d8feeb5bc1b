"""In-memory stand-ins for the markets predictor's online features and model (unit tests of
the operator's logic; the integration tests use Feast, Redis/SQLite and MLflow)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _View:
    name: str = "indicators_1m"
    ttl_ms: int = 0


@dataclass(frozen=True)
class _Vectors:
    values: np.ndarray
    event_ms: np.ndarray


class FakeOnlineStore:
    """The online store in memory: per pair, the end of the latest candle it holds."""

    name = "markets_test"
    columns = ("close",)
    views = (_View(),)

    def __init__(self) -> None:
        self.latest_end: dict[str, int] = {}

    def read(self, entities: Sequence[str]) -> _Vectors:
        ends = np.array([[self.latest_end.get(p, -1)] for p in entities], dtype=np.int64)
        return _Vectors(np.ones((len(entities), 1)), ends.reshape(len(entities), 1))


@dataclass(frozen=True)
class FakeModel:
    name: str = "markets"
    version: str = "7"

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), 0.25)


@dataclass(frozen=True)
class FakeModels:
    current: FakeModel = FakeModel()
