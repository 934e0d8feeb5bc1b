"""The demo's one sentence per model says, baseline by baseline and metric by metric, whether
the model beats it, and why it holds its alias."""

from __future__ import annotations

from cli.verdict import verdict
from training.results import PromotionDecision, TrainResult


def result(metrics: dict[str, float], champion_version: str | None = None,
           alias: str = "champion") -> TrainResult:
    decision = PromotionDecision(alias=alias, metric="roc_auc", candidate_score=0.0,
                                 champion_score=None, champion_version=champion_version,
                                 margin=0.0, reason="roc_auc 0.48 does not beat champion v3's "
                                                    "0.51 by more than 0.0")
    return TrainResult(run_id="r", model_name="m", version="4",
                       metrics={"test_rows": 1234, **metrics}, decision=decision, data={})


def test_each_baseline_is_judged_on_both_metrics() -> None:
    text = verdict(result({"test_roc_auc": 0.989, "test_log_loss": 0.028,
                           "never_alert_test_roc_auc": 0.5, "never_alert_test_log_loss": 0.41,
                           "logistic_test_roc_auc": 0.993, "logistic_test_log_loss": 0.036}),
                   ("never_alert", "logistic"), why="a reason")
    assert text == (
        "On its test period (1,234 rows) m v4 scores ROC AUC 0.989 / log loss 0.0280 against "
        "never-alert's 0.500 / 0.4100 and logistic's 0.993 / 0.0360: it beats never-alert on "
        "both, it beats logistic on log loss but not on ROC AUC (a reason); it is champion "
        "because no version held the alias yet.")


def test_a_model_that_beats_nothing_says_so_and_why_it_stays_challenger() -> None:
    text = verdict(result({"test_roc_auc": 0.48, "test_log_loss": 0.70,
                           "majority_test_roc_auc": 0.5, "majority_test_log_loss": 0.69},
                          champion_version="3", alias="challenger"), ("majority",))
    assert "it does not beat majority on either;" in text
    assert text.endswith("it stays challenger: v3 keeps champion (roc_auc 0.48 does not beat "
                         "champion v3's 0.51 by more than 0.0).")
