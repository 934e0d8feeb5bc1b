"""Property-based fuzz of the trades decoder: it never raises, and every message is either a
valid trade or a dead letter with a reason, source topic, partition and offset."""

from __future__ import annotations

import json

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schemas.trade import Trade
from streaming.processors.trade_decoding import decode_trades
from streaming.runtime.records import InputBatch
from tests.support.entity_keys import entity_keys

VALID = {"v": 1, "pair": "XBT/USD", "price": 100.5, "volume": 0.25, "side": "sell",
         "order_type": "market", "trade_id": 42, "timestamp_ms": 1_700_000_000_000}

def _dumps(value: object) -> bytes:
    """stdlib json: also writes huge integers and NaN/Infinity (invalid JSON: good fuzz)."""
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)

mutated_trade = st.fixed_dictionaries(
    {},
    optional={name: st.one_of(st.just(value), json_values) for name, value in VALID.items()},
).map(_dumps)

message = st.one_of(
    st.just(orjson.dumps(VALID)),
    mutated_trade,
    st.binary(max_size=40),
    json_values.map(_dumps),
    st.none(),
)


def _batch(values: list[bytes | None]) -> InputBatch:
    return InputBatch("trades", 3, np.arange(100, 100 + len(values), dtype=np.int64),
                      entity_keys(values), values)


@given(st.lists(message, min_size=1, max_size=30))
@settings(max_examples=400, deadline=None)
def test_every_message_is_decoded_or_dead_lettered_never_both_never_dropped(values) -> None:
    decoded = decode_trades(_batch(values))
    letter_offsets = {letter.offset for letter in decoded.dead_letters}
    valid_offsets = set(decoded.offsets.tolist())
    assert letter_offsets.isdisjoint(valid_offsets)
    assert letter_offsets | valid_offsets == set(range(100, 100 + len(values)))
    assert decoded.table.num_rows == len(valid_offsets)
    for letter in decoded.dead_letters:
        assert letter.reason and letter.topic == "trades" and letter.partition == 3
        assert letter.value == values[letter.offset - 100]
    # whatever the decoder accepts, the producer-side schema accepts too
    for row in decoded.table.to_pylist():
        Trade.model_validate(row)


@given(st.lists(st.sampled_from([orjson.dumps(VALID), b"{oops"]), min_size=1, max_size=20))
@settings(max_examples=100, deadline=None)
def test_one_bad_message_does_not_reject_its_batch(values) -> None:
    decoded = decode_trades(_batch(values))
    assert decoded.table.num_rows == values.count(orjson.dumps(VALID))


def test_reasons_name_the_problem() -> None:
    bad = {
        "negative volume": {**VALID, "volume": -1.0},
        "zero price": {**VALID, "price": 0},
        "missing field": {k: v for k, v in VALID.items() if k != "pair"},
        "wrong version": {**VALID, "v": 2},
        "bad side": {**VALID, "side": "up"},
    }
    decoded = decode_trades(_batch([orjson.dumps(v) for v in bad.values()]))
    reasons = [letter.reason for letter in decoded.dead_letters]
    assert reasons == [
        "invalid: volume must be positive",
        "invalid: price must be positive",
        "invalid: pair is missing",
        "schema: unsupported version",
        "invalid: side must be one of buy, sell, unknown",
    ]
