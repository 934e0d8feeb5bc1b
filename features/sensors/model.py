"""The alert model interface, its validating `predict`, and the transparent logistic baseline.

Processors only see :class:`AlertModel` (a `version` and a batched `predict_proba`), so a model
loaded from a registry replaces the baseline without touching them. Inputs are the 5 integers
(:data:`~features.sensors.schemas.VECTOR_FIELDS`: SX, SY, FA bin, FI bin, FD bin), each in 0..9.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from features.sensors.schemas import BIN_COUNT, CATEGORY_COUNT, VECTOR_FIELDS

VECTOR_LENGTH = len(VECTOR_FIELDS)
# upper bound (exclusive) of each position: categories for SX, SY, bins for FA, FI, FD
VECTOR_LIMITS = np.array([CATEGORY_COUNT, CATEGORY_COUNT, BIN_COUNT, BIN_COUNT, BIN_COUNT])


class InvalidVectorError(ValueError):
    """The input is not exactly 5 integers in range."""


@runtime_checkable
class AlertModel(Protocol):
    """What the join processor needs from a model."""

    @property
    def version(self) -> str:
        """Travels with every prediction."""
        ...

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """Alert probabilities for an (n, 5) int64 array of validated vectors."""
        ...


def pinned(model: AlertModel) -> AlertModel:
    """The model to use for one batch. A model that can change between calls (one watched in
    a registry, hot-swapped) gives its current version through `pinned()`, so a batch's
    probabilities and the version they carry come from one model; others are themselves."""
    pin = getattr(model, "pinned", None)
    return pin() if callable(pin) else model


def _check_element(position: int, item: object) -> int:
    # bool is an int in Python, but True is not a category; numpy ints are fine
    if isinstance(item, bool | np.bool_) or not isinstance(item, int | np.integer):
        raise InvalidVectorError(
            f"{VECTOR_FIELDS[position]} must be an integer, got {type(item).__name__} {item!r}")
    value = int(item)
    limit = int(VECTOR_LIMITS[position])
    if not 0 <= value < limit:
        raise InvalidVectorError(
            f"{VECTOR_FIELDS[position]} must be in 0..{limit - 1}, got {value}")
    return value


def as_vector(vector: object) -> np.ndarray:
    """Validate one vector: exactly 5 integers (not floats, strings, bools or None), each in
    range. Returns it as a (1, 5) int64 array; raises :class:`InvalidVectorError` otherwise."""
    if isinstance(vector, str | bytes | dict) or not isinstance(vector, Sequence | np.ndarray):
        raise InvalidVectorError(
            f"expected a sequence of exactly {VECTOR_LENGTH} integers "
            f"({', '.join(VECTOR_FIELDS)}), got {type(vector).__name__}")
    items = list(vector.tolist() if isinstance(vector, np.ndarray) and vector.dtype.kind != "i"
                 else vector)
    if len(items) != VECTOR_LENGTH:
        raise InvalidVectorError(
            f"expected exactly {VECTOR_LENGTH} integers ({', '.join(VECTOR_FIELDS)}), "
            f"got {len(items)}")
    return np.array([[_check_element(i, x) for i, x in enumerate(items)]], dtype=np.int64)


def validate_vectors(vectors: np.ndarray) -> np.ndarray:
    """Validate an (n, 5) integer array at once; the error names the first bad row."""
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[1] != VECTOR_LENGTH:
        raise InvalidVectorError(f"expected shape (n, {VECTOR_LENGTH}), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise InvalidVectorError(f"expected integers, got dtype {arr.dtype}")
    bad = ((arr < 0) | (arr >= VECTOR_LIMITS)).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        try:
            _ = [_check_element(i, int(x)) for i, x in enumerate(arr[row])]
        except InvalidVectorError as exc:
            raise InvalidVectorError(f"row {row}: {exc}") from None
    return arr.astype(np.int64, copy=False)


def check_probabilities(p: np.ndarray, version: str) -> np.ndarray:
    out = np.asarray(p, dtype=np.float64)
    if not np.all((out >= 0.0) & (out <= 1.0)):  # NaN fails too
        raise ValueError(f"model {version} returned a probability outside [0, 1]")
    return out


def predict(model: AlertModel, vector: object) -> float:
    """The alert probability of one vector, validated on the way in and on the way out."""
    try:
        return float(check_probabilities(model.predict_proba(as_vector(vector)),
                                         model.version)[0])
    except InvalidVectorError as exc:
        # re-raise with the vector for context, keeping the precise reason
        raise InvalidVectorError(f"invalid vector {vector!r}: {exc}") from None


def predict_many(model: AlertModel, vectors: np.ndarray) -> np.ndarray:
    """Probabilities for an (n, 5) array (the processors' batched path)."""
    valid = validate_vectors(vectors)
    if len(valid) == 0:
        return np.empty(0, dtype=np.float64)
    return check_probabilities(model.predict_proba(valid), model.version)


@dataclass(frozen=True)
class LogisticAlertModel:
    """`p = 1 / (1 + exp(-(intercept + sum(coefficients[k] * x[k]))))` over the 5 integers:
    every weight is readable, e.g. "each FD bin up multiplies the odds by exp(w_FD)"."""

    version: str
    intercept: float
    coefficients: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.coefficients) != VECTOR_LENGTH:
            raise ValueError(f"need {VECTOR_LENGTH} coefficients, got {len(self.coefficients)}")
        object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """Row by row the same floats whatever else the batch holds: the sum is accumulated
        column by column in one fixed order (a matrix product's summation order depends on the
        batch's size, which changed the last bit of a replayed prediction)."""
        x = np.asarray(vectors, dtype=np.float64)
        z = np.full(len(x), self.intercept, dtype=np.float64)
        for k, coefficient in enumerate(self.coefficients):
            z = z + x[:, k] * coefficient
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "logistic", "version": self.version, "intercept": self.intercept,
                "coefficients": dict(zip(VECTOR_FIELDS, self.coefficients, strict=True))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticAlertModel:
        if data.get("kind") != "logistic":
            raise ValueError(f"not a logistic alert model: kind={data.get('kind')!r}")
        coefs = data["coefficients"]
        return cls(str(data["version"]), float(data["intercept"]),
                   tuple(float(coefs[f]) for f in VECTOR_FIELDS))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> LogisticAlertModel:
        return cls.from_json(json.loads(path.read_text()))


# A hand-set baseline, used until `braid sensors train-baseline` fits one on simulated history:
# the odds of an alert grow with the SY alarm level and with high FA and FD bins.
DEFAULT_MODEL = LogisticAlertModel(
    "logistic-default-1", intercept=-6.0, coefficients=(0.0, 0.4, 0.3, 0.1, 0.3))
