"""While indicator rows wait for the online sink, the processor's poll waits only the
predictor's retry interval (so a row is predicted within about that of its features landing);
with nothing waiting it waits the full poll timeout (an idle predictor does not spin)."""

from __future__ import annotations

import numpy as np
import orjson

from streaming.processors.markets_predictor import (
    MarketsPredictorOperator,
    PredictorConfig,
    PredictorGroup,
)
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.runtime.records import InputBatch
from streaming.settings import KafkaSettings
from tests.support.entity_keys import entity_keys
from tests.support.predictor_fakes import FakeModels, FakeOnlineStore

MINUTE = 60_000
END = 1_767_225_600_000


class RecordingConsumer:
    """Stands in for the Kafka consumer: no messages, and it records how long each poll
    would wait."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def consume(self, num_messages: int, timeout: float) -> list[object]:
        return []

    def poll(self, timeout: float) -> None:
        self.timeouts.append(timeout)


def test_the_poll_waits_the_retry_interval_only_while_rows_wait() -> None:
    store = FakeOnlineStore()
    store.latest_end["XBT/USD"] = END - MINUTE  # the candle before the row's
    group = PredictorGroup(PredictorConfig("predictions", MINUTE, feature_wait_ms=60_000,
                                           retry_interval_ms=3), store, FakeModels())
    operator = MarketsPredictorOperator(group, 0)
    processor = StreamProcessor(
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        ProcessorConfig("p", ("indicators",), poll_timeout_s=0.25),
        lambda partition: operator)
    consumer = RecordingConsumer()
    processor._consumer = consumer  # type: ignore[assignment]
    processor._operators = {0: operator}
    processor._group_kinds()

    processor._poll()
    assert consumer.timeouts == [0.25]  # nothing waits: the poll timeout

    row = {"pair": "XBT/USD", "window_ms": MINUTE, "window_start_ms": END - MINUTE,
           "window_end_ms": END}
    emission = group.process_many(
        [(0, InputBatch("indicators", 0, np.array([5]), entity_keys([orjson.dumps(row)]),
                        [orjson.dumps(row)]))], 0)
    assert not emission.records and len(group.pending) == 1  # the sink has not written it
    processor._poll()
    assert consumer.timeouts[-1] == 0.003
    assert group.commit_offset(0) == 5  # the commit never passes a waiting row

    store.latest_end["XBT/USD"] = END  # the sink writes the candle
    emission = MarketsPredictorOperator.tick_many([operator], 0)
    assert [orjson.loads(r.value)["window_end_ms"] for r in emission.records] == [END]
    processor._poll()
    assert consumer.timeouts[-1] == 0.25
    assert group.commit_offset(0) == 6
