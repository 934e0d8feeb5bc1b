"""One rule for "stale", shared by the stream predictor and the prediction API
(`features.freshness`): a view's row is stale when it is more than the view's TTL older than the
moment of the decision. The predictor's moment is the indicator row's Kafka timestamp, the API's
the request's wall clock; given the same row, TTL and moment, both decide the same, on each side
of the TTL's edge. (The rule itself mirrors Feast's point-in-time TTL, which
`tests/integration/serving/test_training_sets.py` pins at the same edge: a row exactly one TTL
old still counts, one millisecond more does not.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from features.freshness import is_stale, stale_reason
from serving.api import app as api
from streaming.processors.markets_predictor import PredictorConfig, PredictorGroup
from streaming.runtime.records import InputBatch
from tests.support.entity_keys import entity_keys
from tests.support.predictor_fakes import FakeModels

MINUTE = 60_000
TTL = 2 * MINUTE
END = 1_767_225_600_000  # the candle's window end: its features' event time


@dataclass(frozen=True)
class View:
    name: str
    ttl_ms: int


@dataclass(frozen=True)
class Vectors:
    values: np.ndarray
    event_ms: np.ndarray


class OneRowStore:
    """The online store holding, for every pair, the candle ending at END (two views)."""

    name = "markets_test"
    columns = ("candles_1m__close", "indicators_1m__rsi_14")
    views = (View("candles_1m", TTL), View("indicators_1m", TTL))

    def read(self, entities: Sequence[str]) -> Vectors:
        n = len(entities)
        return Vectors(np.ones((n, 2)), np.full((n, 2), END, dtype=np.int64))


def predictor_decision(published_ms: int) -> str:
    """"prediction" or the predictor's reason, for an indicator row published at
    `published_ms` (its Kafka timestamp)."""
    group = PredictorGroup(PredictorConfig("predictions", MINUTE, feature_wait_ms=0),
                           OneRowStore(), FakeModels())
    row = {"pair": "XBT/USD", "window_ms": MINUTE, "window_start_ms": END - MINUTE,
           "window_end_ms": END}
    values: list[bytes | None] = [orjson.dumps(row)]
    emission = group.process_many([(0, InputBatch(
        "indicators", 0, np.array([1]), entity_keys(values), values,
        np.array([published_ms], dtype=np.int64)))], 0)
    if emission.records:
        return "prediction"
    (reason,) = [r for r, n in group.counts.items() if n and r != "predictions"]
    return reason


def api_decision(now_ms: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """"prediction" or the API's 409 reason, for POST /predict at wall-clock `now_ms`."""
    @dataclass
    class Watcher:
        current: Any = FakeModels().current
        uri: str = "models:/m@champion"

    services = api.Services(reader=cast(Any, OneRowStore()), watcher=cast(Any, Watcher()))
    monkeypatch.setattr(api.time, "time", lambda: now_ms / 1000)
    answer = TestClient(api.create_app(services)).post("/predict", json={"pair": "XBT/USD"})
    if answer.status_code == 200:
        return "prediction"
    assert answer.status_code == 409, answer.text
    return str(answer.json()["detail"]).split(":", 1)[0]


@pytest.mark.parametrize("age_ms", [0, 1, TTL - 1, TTL, TTL + 1, 10 * TTL])
def test_predictor_and_api_decide_stale_alike_at_the_same_moment(
        age_ms: int, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "stale" if age_ms > TTL else "prediction"  # by hand: older than the TTL
    assert predictor_decision(END + age_ms) == expected
    assert api_decision(END + age_ms, monkeypatch) == expected


def test_the_rule_and_its_reason() -> None:
    assert not is_stale(END, END + TTL, TTL)
    assert is_stale(END, END + TTL + 1, TTL)
    assert not is_stale(END, END + 10**9, 0)  # no TTL: never stale
    assert stale_reason("candles_1m", END, END + TTL + 5, TTL) == (
        "stale: candles_1m row is 120005 ms old, over the view's TTL of 120000 ms")
    assert stale_reason("candles_1m", END, END + TTL, TTL) is None
