"""The time split leaves a gap between its parts; promotion and baselines follow their rules."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import classification_metrics, persistence_baseline
from training.promotion import decide
from training.splits import time_split


def test_no_validation_or_test_time_lies_within_the_gap_of_an_earlier_part() -> None:
    rng = np.random.default_rng(3)
    # two keys, minute times with holes, shuffled: the split must not depend on the row order
    times = np.concatenate([np.sort(rng.choice(10_000, 3_000, replace=False)) * 60_000] * 2)
    rng.shuffle(times)
    gap = 5 * 60_000
    parts = time_split(times, gap=gap, validation_fraction=0.2, test_fraction=0.2)
    train, val, test = times[parts.train], times[parts.validation], times[parts.test]
    assert val.min() - train.max() > gap
    assert test.min() - val.max() > gap
    # every row is in at most one part, and only rows inside the gaps are left out
    used = np.concatenate([parts.train, parts.validation, parts.test])
    assert len(np.unique(used)) == len(used)
    left_out = np.setdiff1d(np.arange(len(times)), used)
    assert all(val.min() - gap <= times[i] < val.min() or test.min() - gap <= times[i] < test.min()
               for i in left_out)
    # rows at one time never straddle two parts
    assert not set(train) & set(val) and not set(val) & set(test)
    # the parts keep about the asked fractions of distinct times
    assert len(np.unique(test)) == pytest.approx(0.2 * len(np.unique(times)), abs=2)


def test_a_gap_wider_than_a_part_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="validation part is empty"):
        time_split(np.arange(100) * 1_000, gap=20_000, validation_fraction=0.1,
                   test_fraction=0.1)


def test_promotion_needs_more_than_the_margin_and_knows_which_way_is_better() -> None:
    assert decide(0.61, None, "roc_auc", 0.0)  # first model ever
    assert decide(0.61, 0.60, "roc_auc", 0.005)
    assert not decide(0.61, 0.60, "roc_auc", 0.02)
    assert not decide(0.60, 0.60, "roc_auc", 0.0)  # a tie keeps the champion
    assert decide(0.40, 0.45, "log_loss", 0.01)  # lower loss wins
    assert not decide(0.45, 0.40, "log_loss", 0.0)
    with pytest.raises(ValueError, match="unknown metric"):
        decide(0.5, 0.4, "f2", 0.0)


def test_persistence_is_the_train_parts_up_rate_after_an_up_and_after_a_down() -> None:
    y_train = np.array([1, 1, 0, 0, 1, 0])
    previous = np.array([1, 1, 1, 0, 0, 0])  # after up: 2 of 3 up; after down: 1 of 3
    p = persistence_baseline(y_train, previous, np.array([1, 0, 1]))
    assert p.tolist() == pytest.approx([2 / 3, 1 / 3, 2 / 3])


def test_metrics_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.6, 0.4, 0.1])
    m = classification_metrics(y, p, moved=np.array([True, True, False, True]))
    assert m["accuracy"] == 0.5  # 0.9 right, 0.6 wrong, 0.4 wrong, 0.1 right
    assert m["roc_auc"] == 0.75  # 3 of 4 positive/negative pairs ordered right
    assert m["directional_accuracy"] == pytest.approx(2 / 3)
    assert m["mae"] == pytest.approx((0.1 + 0.6 + 0.6 + 0.1) / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))
    assert m["precision"] == 0.5 and m["recall"] == 0.5
