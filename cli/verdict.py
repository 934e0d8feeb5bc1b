"""One honest sentence on a trained model: its test-period scores against its baselines, whether
it beats them, and why it holds the alias it got."""

from __future__ import annotations

from training.results import TrainResult


def verdict(result: TrainResult, baselines: tuple[str, ...], why: str = "") -> str:
    """`On its test period (N rows) the model scores ROC AUC a / log loss b against x's ...
    and y's ...: it beats x but not y[, why]; it is champion because ...`."""
    m = result.metrics
    scores = " and ".join(
        f"{b.replace('_', '-')}'s {m[f'{b}_test_roc_auc']:.3f} / {m[f'{b}_test_log_loss']:.4f}"
        for b in baselines)
    clauses = []
    for b in baselines:
        auc = m["test_roc_auc"] > m[f"{b}_test_roc_auc"]
        loss = m["test_log_loss"] < m[f"{b}_test_log_loss"]
        name = b.replace("_", "-")
        if auc and loss:
            clauses.append(f"it beats {name} on both")
        elif not auc and not loss:
            clauses.append(f"it does not beat {name} on either")
        else:
            better, worse = ("ROC AUC", "log loss") if auc else ("log loss", "ROC AUC")
            clauses.append(f"it beats {name} on {better} but not on {worse}")
    outcome = ", ".join(clauses)
    decision = result.decision
    if decision.champion_version is None:
        alias = "it is champion because no version held the alias yet"
    elif decision.alias == "champion":
        alias = (f"it is champion because it beat v{decision.champion_version} on the same "
                 "rows")
    else:
        alias = (f"it stays challenger: v{decision.champion_version} keeps champion "
                 f"({decision.reason})")
    return (f"On its test period ({int(m['test_rows']):,} rows) {result.model_name} "
            f"v{result.version} scores ROC AUC {m['test_roc_auc']:.3f} / log loss "
            f"{m['test_log_loss']:.4f} against {scores}: {outcome}"
            f"{' (' + why + ')' if why else ''}; {alias}.")
