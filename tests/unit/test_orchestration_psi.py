"""The population stability index against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from orchestration.psi import EPSILON, bin_edges, psi, psi_per_feature, shares


def test_two_bins_split_at_the_reference_median_match_a_hand_computation() -> None:
    # reference 1,2,3,4: median 2.5, shares 0.5 / 0.5; new 1,1,1,4: shares 0.75 / 0.25
    expected = 0.25 * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert bin_edges([1, 2, 3, 4], bins=2).tolist() == [2.5]
    assert psi([1, 2, 3, 4], [1, 1, 1, 4], bins=2) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.274653, abs=1e-6)


def test_an_empty_bin_counts_as_epsilon_not_infinity() -> None:
    hand = (1 - 0.5) * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert psi([1, 2, 3, 4], [1, 1, 1, 1], bins=2) == pytest.approx(hand, abs=1e-12)
    assert hand == pytest.approx(4.604318, abs=1e-6)


def test_same_distribution_gives_zero_and_nan_is_left_out() -> None:
    values = np.arange(100, dtype=float)
    assert psi(values, values) == 0.0
    assert psi(values, np.append(values, np.nan)) == 0.0


def test_deciles_put_values_on_an_edge_in_the_lower_bin() -> None:
    edges = bin_edges(np.arange(1, 11, dtype=float), bins=10)
    assert shares([1.9, 10.0, 100.0], edges).tolist()[0] == pytest.approx(1 / 3)
    assert shares([1.9, 10.0, 100.0], edges).tolist()[-1] == pytest.approx(2 / 3)


def test_a_shifted_feature_drifts_and_the_error_names_a_missing_feature() -> None:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 5000), "b": rng.normal(0, 1, 5000)})
    current = pd.DataFrame({"a": rng.normal(0, 1, 5000), "b": rng.normal(1.5, 1, 5000)})
    result = psi_per_feature(reference, current, ["a", "b"])
    assert result["a"] < 0.05 < 0.2 < result["b"]
    with pytest.raises(KeyError, match="'c' missing from the reference"):
        psi_per_feature(reference, current, ["c"])
    with pytest.raises(ValueError, match="feature 'a': no finite value"):
        psi_per_feature(reference, current.assign(a=np.nan), ["a"])
