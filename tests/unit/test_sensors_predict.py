"""`predict`: exactly 5 integers in range in, a probability in [0, 1] out, clear errors otherwise.

Written before `features.sensors.model.predict` (test-first, as the issue asks).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.sensors.model import (
    DEFAULT_MODEL,
    InvalidVectorError,
    LogisticAlertModel,
    predict,
    validate_vectors,
)

VALID = [3, 1, 4, 1, 5]


class ConstantModel:
    """Any object with `version` and `predict_proba` is an AlertModel (a registry model too)."""

    version = "constant-0.25"

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return np.full(len(vectors), 0.25)


def test_a_valid_vector_gets_a_probability_between_zero_and_one() -> None:
    p = predict(DEFAULT_MODEL, VALID)
    assert isinstance(p, float)
    assert 0.0 <= p <= 1.0


def test_the_baseline_is_a_logistic_of_the_weighted_integers() -> None:
    model = LogisticAlertModel("t", intercept=-1.0, coefficients=(0.1, 0.2, 0.3, 0.4, 0.5))
    z = -1.0 + 0.1 * 3 + 0.2 * 1 + 0.3 * 4 + 0.4 * 1 + 0.5 * 5
    assert predict(model, VALID) == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-12)


def test_any_model_behind_the_interface_is_used_as_is() -> None:
    assert predict(ConstantModel(), VALID) == 0.25


@pytest.mark.parametrize("vector", [[], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6]])
def test_a_vector_of_the_wrong_length_is_rejected(vector) -> None:
    with pytest.raises(InvalidVectorError, match="exactly 5"):
        predict(DEFAULT_MODEL, vector)


@pytest.mark.parametrize("bad", [1.0, 2.5, "3", None, True, np.float64(1.0)])
def test_a_vector_with_a_non_integer_is_rejected(bad) -> None:
    with pytest.raises(InvalidVectorError, match="integer"):
        predict(DEFAULT_MODEL, [bad, 1, 2, 3, 4])


@pytest.mark.parametrize("bad", [-1, 10, 1_000])
def test_a_vector_with_an_out_of_range_bin_is_rejected(bad) -> None:
    with pytest.raises(InvalidVectorError, match=r"0\.\.9"):
        predict(DEFAULT_MODEL, [1, 2, bad, 3, 4])


@pytest.mark.parametrize("vector", [None, "12345", 12345, {"SX": 1}])
def test_something_that_is_not_a_sequence_is_rejected(vector) -> None:
    with pytest.raises(InvalidVectorError):
        predict(DEFAULT_MODEL, vector)


def test_numpy_integers_are_accepted() -> None:
    assert 0.0 <= predict(DEFAULT_MODEL, np.array(VALID, dtype=np.int64)) <= 1.0


def test_a_model_returning_a_probability_outside_zero_one_is_an_error() -> None:
    class Broken:
        version = "broken"

        def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
            return np.array([1.5])

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        predict(Broken(), VALID)


def test_batch_validation_names_the_bad_row() -> None:
    with pytest.raises(InvalidVectorError, match="row 1"):
        validate_vectors(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 10]]))


@given(st.lists(st.integers(0, 9), min_size=5, max_size=5))
@settings(max_examples=200, deadline=None)
def test_every_valid_vector_gets_a_probability_in_range(vector) -> None:
    assert 0.0 <= predict(DEFAULT_MODEL, vector) <= 1.0


def test_the_model_round_trips_through_json_with_its_version() -> None:
    model = LogisticAlertModel("m-7", intercept=0.5, coefficients=(1, 2, 3, 4, 5))
    again = LogisticAlertModel.from_json(model.to_json())
    assert again == model and again.version == "m-7"
