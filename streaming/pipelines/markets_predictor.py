"""The markets predictor wired to its topics: technical_indicators -> predictions.markets.

The online features and the model come from outside (`serving.online_features`,
`serving.models`, wired by `braid markets predictor` or a test), so `streaming` does not import
`serving`.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.processors.markets_predictor import (
    MarketsPredictorOperator,
    ModelSource,
    OnlineFeatureSource,
    PredictorConfig,
    PredictorGroup,
)
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.settings import KafkaSettings
from streaming.topics import (
    CHECKPOINTS,
    DEAD_LETTER,
    INDICATORS,
    MARKET_PREDICTIONS,
    TopicSpec,
    catalogue,
)


@dataclass(frozen=True)
class PredictorTopics:
    """The predictor's topics (a prefix isolates test runs on a shared broker)."""

    indicators: str = INDICATORS
    predictions: str = MARKET_PREDICTIONS
    dead_letter: str = DEAD_LETTER
    checkpoints: str = CHECKPOINTS

    @classmethod
    def prefixed(cls, prefix: str) -> PredictorTopics:
        base = cls()
        return cls(*(prefix + getattr(base, f) for f in cls.__dataclass_fields__))

    def specs(self, partitions: int) -> list[TopicSpec]:
        """The catalogue's specs renamed; the keyed topics get `partitions`."""
        names = {INDICATORS: self.indicators, MARKET_PREDICTIONS: self.predictions,
                 DEAD_LETTER: self.dead_letter, CHECKPOINTS: self.checkpoints}
        keyed = {INDICATORS, MARKET_PREDICTIONS}
        return [TopicSpec(names[s.name], partitions if s.name in keyed else s.partitions,
                          s.cleanup_policy, s.retention_ms, s.description, s.extra)
                for s in catalogue() if s.name in names]


def predictor_processor(
    kafka: KafkaSettings,
    features: OnlineFeatureSource,
    models: ModelSource,
    *,
    window_ms: int,
    topics: PredictorTopics = PredictorTopics(),
    group: str = "braid-markets-predictor",
    feature_wait_ms: int = 2_000,
    retry_interval_ms: int = 2,
    poll_timeout_s: float = 0.1,
    batch_size: int = 1_000,
) -> tuple[StreamProcessor, PredictorGroup]:
    """The processor and its shared group (whose `counts` hold the reasons). Rows waiting for
    the online sink are retried every `retry_interval_ms` (the poll waits no longer while any
    row waits), so they are predicted soon after the sink writes; an idle predictor polls
    every `poll_timeout_s` (a message ends a poll at once)."""
    shared = PredictorGroup(PredictorConfig(topics.predictions, window_ms, feature_wait_ms,
                                            retry_interval_ms), features, models)
    processor = StreamProcessor(
        kafka,
        ProcessorConfig(group, (topics.indicators,), batch_size=batch_size,
                        poll_timeout_s=poll_timeout_s, dead_letter_topic=topics.dead_letter,
                        checkpoint_topic=topics.checkpoints),
        lambda partition: MarketsPredictorOperator(shared, partition),
    )
    return processor, shared
