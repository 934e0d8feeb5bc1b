"""What a training run hands back: its MLflow run, the registered version and the decision.

The Prefect flows, the CLI and the tests read these; nothing here talks to MLflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PromotionDecision:
    """Which alias a new version got, and the two scores on the same test period behind it."""

    #: `champion` or `challenger` (features.model_contract).
    alias: str
    metric: str
    candidate_score: float
    #: The previous champion's score on the candidate's test set; None when there was none.
    champion_score: float | None
    #: The version that held `champion` before the decision; None when there was none.
    champion_version: str | None
    margin: float
    reason: str

    @property
    def promoted(self) -> bool:
        return self.alias == "champion"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """One training run: MLflow run id, registered model name and version, test metrics
    (model and baselines, e.g. `test_roc_auc`, `majority_test_roc_auc`) and the promotion."""

    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    decision: PromotionDecision
    #: The training set's record (feature service, Delta versions, digest) or data source facts.
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def alias(self) -> str:
        return self.decision.alias

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alias": self.alias}
