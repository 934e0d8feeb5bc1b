"""Hypothesis strategies of hostile wire records, mixed with valid ones, for every stream format.

Every generated record is a :class:`Wire`: its bytes (or None) and whether it is valid, decided
here by how it was built (from the formats' documented contracts), never by asking the code
under test. Valid records keep their content (`row`) so tests compute what the operators must
emit on their own.

Event time is controlled so that no valid record is ever late: valid event times lie in
`[T0, T0 + SPAN_MS)` and every operator under test waits at least `SPAN_MS` of grace. Every
message carries the Kafka timestamp `INGEST_MS`, so the event-time skew rule
(`features.event_time`) applies to the formats that have it.

`TALLY` counts, per operator, the record kinds tried and the dead-letter reasons seen; the
folder's conftest prints it at the end of the run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from hypothesis import strategies as st

from tests.support.reliability_report import reason_class as reason_class

T0 = 1_767_225_600_000  # 2026-01-01 UTC: aligned to every window size used here
SPAN_MS = 300_000  # valid event times lie in [T0, T0 + SPAN_MS)
INGEST_MS = T0 + SPAN_MS  # the Kafka timestamp of every message
MAX_SKEW_MS = 3_600_000  # features.event_time's default, restated (not imported)
HUGE = 900_000  # bytes of a huge field
INT64_MAX = 2**63 - 1
MAX_PAIR = 32  # Trade.pair's documented maximum length
MAX_CLIENT = 64  # a reading's client: the documented maximum length (features.sensors.schemas)
MAX_READING_TS = 1 << 43  # a reading's timestamp_ms: the documented bound (exclusive)
MAX_TRADE = 1e100  # Trade.price's and Trade.volume's documented bound (inclusive)

T = TypeVar("T")

PAIRS = ("XBT/USD", "ETH/USD", "É/€")  # includes non-ASCII (valid UTF-8)
CLIENTS = ("c0", "c1", "ü-2")

# per operator: Counter of "tried:<kind>" and "dead:<reason>"
TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)


class Raw(bytes):
    """A field value inserted into the JSON text verbatim (NaN literals, invalid UTF-8...)."""


def encode(obj: dict[str, object]) -> bytes:
    """A JSON object in the given key order; :class:`Raw` values go in as they are."""
    parts = [orjson.dumps(k) + b":" + (bytes(v) if isinstance(v, Raw) else orjson.dumps(v))
             for k, v in obj.items()]
    return b"{" + b",".join(parts) + b"}"


ENTITY_KEY = b"<the record's entity key>"
"""A :class:`Wire`'s `key` when it carries its entity's key (the pair, the candle's record key,
the client), as every producer writes it: the feeding test derives the bytes from the record."""
FOREIGN_KEY = b"XBT/USD|60000|0"


@dataclass(frozen=True)
class Wire:
    kind: str
    value: bytes | None
    valid: bool
    row: dict[str, Any] | None = None  # the decoded content of a valid record
    #: the Kafka key: ENTITY_KEY (its entity's, derived when fed), other bytes, or None
    key: bytes | None = ENTITY_KEY


def ok(kind: str, row: dict[str, Any], value: bytes | None = None) -> Wire:
    return Wire(kind, encode(row) if value is None else value, True, row)


def bad(kind: str, value: bytes | None) -> Wire:
    return Wire(kind, value, False)


# --- building blocks --------------------------------------------------------------------------

def event_times() -> st.SearchStrategy[int]:
    """Valid event times: within the span, often on window edges (ties are common)."""
    edges = [0, 1, 59_999, 60_000, 60_001, 119_999, SPAN_MS - 1]
    return st.one_of(st.sampled_from(edges), st.integers(0, SPAN_MS - 1)).map(lambda d: T0 + d)


def positive_floats(largest: float = 1.7976931348623157e308) -> st.SearchStrategy[float]:
    """Finite positive floats, including extremes of the range up to `largest`."""
    return st.one_of(
        st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
        st.sampled_from([x for x in (5e-324, 1e-300, 1.0, 0.1, 1e100, 1e300,
                                     1.7976931348623157e308) if x <= largest]),
    )


def garbage(base: bytes) -> st.SearchStrategy[Wire]:
    """Messages no format accepts, whatever the record: `base` is a valid record's bytes."""
    return st.one_of(
        st.sampled_from(garbage_records(base)),
        st.binary(max_size=40).map(lambda b: bad("binary", b"\x00" + b)),
    )


def garbage_records(base: bytes) -> list[Wire]:
    """Every kind of :func:`garbage` once (binary: one fixed sample)."""
    return [
        bad("not_json", b"not json"),
        bad("truncated_json", base[:-1]),
        bad("empty_bytes", b""),
        bad("whitespace_only", b"  \n "),
        bad("none_value", None),
        bad("json_array", b"[" + base + b"]"),
        bad("json_null", b"null"),
        bad("json_number", b"42"),
        bad("json_string", b'"hello"'),
        bad("json_true", b"true"),
        bad("two_objects_two_lines", base + b"\n" + base),
        bad("two_objects_one_line", base + b" " + base),
        bad("single_quotes", base.replace(b'"', b"'")),
        bad("invalid_utf8_prefix", b"\xff\xfe" + base),
        bad("huge_not_json", b"{" + b"x" * HUGE),
        bad("binary", b"\x00\x01\xff"),
    ]


Mutation = tuple[str, str, object]  # (kind, field, new value); value MISSING drops the field
MISSING = object()


def mutated(base: st.SearchStrategy[dict[str, Any]], mutations: Sequence[Mutation],
            ) -> st.SearchStrategy[Wire]:
    """An invalid record: a valid row with one field broken (every mutation here must make
    any record invalid)."""
    return st.builds(mutate, base, st.sampled_from(list(mutations)))


def mutate(row: dict[str, Any], mutation: Mutation) -> Wire:
    """`row` with one field broken by `mutation`."""
    kind, name, value = mutation
    broken = {k: v for k, v in row.items() if k != name}
    if value is not MISSING:
        broken[name] = value
    return bad(kind, encode(broken))


def common_mutations(fields: Sequence[str], string_field: str, max_length: int
                     ) -> list[Mutation]:
    """Missing and null fields, and the hostile versions of the key string field."""
    out: list[Mutation] = []
    for name in fields:
        out.append((f"missing_{name}", name, MISSING))
        out.append((f"null_{name}", name, None))
    out += [
        (f"{string_field}_with_bar", string_field, "A|B"),
        (f"{string_field}_empty", string_field, ""),
        (f"{string_field}_too_long", string_field, "x" * (max_length + 1)),
        (f"{string_field}_huge", string_field, "x" * HUGE),
        (f"{string_field}_invalid_utf8", string_field, Raw(b'"\xff\xfeAB"')),
        (f"{string_field}_number", string_field, 42),
        (f"{string_field}_object", string_field, {"a": 1}),
    ]
    return out


def non_finite(field: str) -> list[Mutation]:
    return [(f"{field}_nan_literal", field, Raw(b"NaN")),
            (f"{field}_infinity_literal", field, Raw(b"Infinity")),
            (f"{field}_minus_infinity_literal", field, Raw(b"-Infinity")),
            (f"{field}_overflow_1e400", field, Raw(b"1e400"))]


def wrong_int(field: str) -> list[Mutation]:
    return [(f"{field}_string", field, "12"), (f"{field}_bool", field, True),
            (f"{field}_fraction", field, 1.5), (f"{field}_beyond_int64", field, 2**63),
            (f"{field}_beyond_uint64", field, Raw(b"100000000000000000000000000000"))]


def wrong_float(field: str) -> list[Mutation]:
    return [(f"{field}_string", field, "1.5"), (f"{field}_bool", field, True),
            (f"{field}_list", field, [1.0]), *non_finite(field)]


@st.composite
def sequences(draw: st.DrawFn, valid: st.SearchStrategy[T], hostile: st.SearchStrategy[T],
              max_valid: int = 25, max_hostile: int = 15, min_valid: int = 0,
              min_hostile: int = 0) -> list[T]:
    """Valid records (some repeated verbatim) and hostile ones, in any order."""
    good = draw(st.lists(valid, min_size=min_valid, max_size=max_valid))
    repeats = draw(st.lists(st.sampled_from(good), max_size=5)) if good else []
    hostile_records = draw(st.lists(hostile, min_size=min_hostile, max_size=max_hostile))
    return list(draw(st.permutations(good + repeats + hostile_records)))


def variants(row: dict[str, Any], extra_ok: bool,
             int_floats: Sequence[str] = ()) -> st.SearchStrategy[Wire]:
    """Valid encodings of one row: plain, keys reversed, padded with whitespace, floats written
    as integers, and (where the format tolerates unknown fields) an extra field."""
    plain = encode(row)
    options = [
        ok("valid", row),
        ok("valid_keys_reversed", row, encode(dict(reversed(list(row.items()))))),
        ok("valid_padded_whitespace", row, b" \t" + plain + b"\r\n"),
    ]
    whole = {k: int(row[k]) for k in int_floats if float(row[k]).is_integer()
             and abs(row[k]) < 2**53}
    if whole:
        options.append(ok("valid_integer_floats", row, encode({**row, **whole})))
    if extra_ok:
        options += [ok("valid_extra_field", row, encode({**row, "note": "x" * 50})),
                    ok("valid_unknown_version_field", row, encode({**row, "v": 99}))]
    return st.sampled_from(options)


# --- trades (CandleOperator) ------------------------------------------------------------------

TRADE_FIELDS = ("v", "pair", "price", "volume", "side", "order_type", "trade_id",
                "timestamp_ms")


def trade_rows() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "v": st.just(1),
        "pair": st.sampled_from(PAIRS),
        "price": positive_floats(MAX_TRADE),
        "volume": positive_floats(MAX_TRADE),
        "side": st.sampled_from(["buy", "sell", "unknown"]),
        "order_type": st.sampled_from(["market", "limit", "unknown"]),
        "trade_id": st.one_of(st.integers(0, 10**6), st.just(INT64_MAX)),
        "timestamp_ms": event_times(),
    })


TRADE_MUTATIONS: list[Mutation] = [
    *common_mutations(TRADE_FIELDS, "pair", MAX_PAIR),
    *wrong_float("price"), *wrong_float("volume"),
    *wrong_int("trade_id"), *wrong_int("timestamp_ms"),
    ("price_zero", "price", 0.0), ("price_negative", "price", -1.0),
    ("volume_zero", "volume", 0), ("volume_negative", "volume", -1e300),
    ("price_beyond_1e100", "price", 1.0000000000000001e101),
    ("price_float_max", "price", 1.7976931348623157e308), ("volume_1e300", "volume", 1e300),
    ("trade_id_negative", "trade_id", -1),
    ("timestamp_zero", "timestamp_ms", 0), ("timestamp_negative", "timestamp_ms", -T0),
    ("timestamp_far_future_1e18", "timestamp_ms", 10**18),
    ("timestamp_beyond_skew", "timestamp_ms", INGEST_MS + MAX_SKEW_MS + 1),
    ("side_unknown_value", "side", "hold"), ("order_type_empty", "order_type", ""),
    ("side_number", "side", 1),
    ("version_2", "v", 2), ("version_0", "v", 0), ("version_string", "v", "1"),
    ("extra_field", "extra", 1),
]


def trade_wires() -> st.SearchStrategy[Wire]:
    return trade_rows().flatmap(
        lambda r: variants(r, extra_ok=False, int_floats=("price", "volume")))


def hostile_trades() -> st.SearchStrategy[Wire]:
    base = trade_rows()
    return st.one_of(base.flatmap(lambda r: garbage(encode(r))), mutated(base, TRADE_MUTATIONS),
                     misplaced(trade_wires()))


# --- candles (IndicatorOperator) --------------------------------------------------------------

CANDLE_SIZES = (60_000, 300_000)
CANDLE_FLOATS = ("open", "high", "low", "close", "volume", "vwap")
CANDLE_FIELDS = ("pair", "window_ms", "window_start_ms", "window_end_ms", *CANDLE_FLOATS,
                 "trade_count")


@st.composite
def candle_rows(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.sampled_from(CANDLE_SIZES))
    # a handful of windows per key, so duplicates and out-of-order windows are common;
    # now and then one far in the future (candles carry no ingestion-time rule)
    start = draw(st.one_of(st.integers(0, 6).map(lambda i: T0 + i * size),
                           st.just(10**18 - 10**18 % size)))
    row: dict[str, Any] = {"pair": draw(st.sampled_from(PAIRS)), "window_ms": size,
                           "window_start_ms": start, "window_end_ms": start + size}
    for name in CANDLE_FLOATS:
        row[name] = draw(positive_floats())
    row["trade_count"] = draw(st.integers(1, 1000))
    return row


CANDLE_MUTATIONS: list[Mutation] = [
    *common_mutations(CANDLE_FIELDS, "pair", MAX_PAIR),
    *(m for name in CANDLE_FLOATS for m in wrong_float(name)),
    *wrong_int("window_ms"), *wrong_int("window_start_ms"), *wrong_int("window_end_ms"),
    *wrong_int("trade_count"),
    ("window_ms_zero", "window_ms", 0), ("window_ms_negative", "window_ms", -60_000),
]


def candle_wires() -> st.SearchStrategy[Wire]:
    return candle_rows().flatmap(lambda r: variants(r, extra_ok=True, int_floats=CANDLE_FLOATS))


def hostile_candles() -> st.SearchStrategy[Wire]:
    base = candle_rows()
    return st.one_of(base.flatmap(lambda r: garbage(encode(r))), mutated(base, CANDLE_MUTATIONS),
                     misplaced(candle_wires()))


# --- indicator rows (markets predictor) -------------------------------------------------------

INDICATOR_KEYS = ("pair", "window_ms", "window_start_ms", "window_end_ms")


@st.composite
def indicator_rows(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.sampled_from(CANDLE_SIZES))
    start = T0 + draw(st.integers(0, 6)) * size
    return {"pair": draw(st.sampled_from(PAIRS)), "window_ms": size, "window_start_ms": start,
            "window_end_ms": start + size, "close": draw(positive_floats()),
            "rsi_14": draw(st.one_of(st.none(), positive_floats()))}


INDICATOR_MUTATIONS: list[Mutation] = [
    *common_mutations(INDICATOR_KEYS, "pair", MAX_PAIR),
    *(m for name in INDICATOR_KEYS[1:] for m in wrong_int(name)),
    ("window_start_negative", "window_start_ms", -1), ("window_ms_negative", "window_ms", -5),
]


def indicator_wires() -> st.SearchStrategy[Wire]:
    return indicator_rows().flatmap(lambda r: variants(r, extra_ok=True))


def hostile_indicators() -> st.SearchStrategy[Wire]:
    base = indicator_rows()
    return st.one_of(base.flatmap(lambda r: garbage(encode(r))),
                     mutated(base, INDICATOR_MUTATIONS), misplaced(indicator_wires()))


# --- sensor readings (SX, SY, SZ) -------------------------------------------------------------

READING_FIELDS = ("v", "client", "timestamp_ms", "value")


def reading_rows(sensor: str) -> st.SearchStrategy[dict[str, Any]]:
    if sensor == "SZ":
        value: st.SearchStrategy[Any] = st.one_of(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
            # extremes, up to the largest magnitude accepted (MAX_SZ_MAGNITUDE, 1e100)
            st.sampled_from([0.0, -0.0, 5e-324, 1e100, -1e100]))
    else:
        value = st.integers(0, 9)
    return st.fixed_dictionaries({"v": st.just(1), "client": st.sampled_from(CLIENTS),
                                  "timestamp_ms": event_times(), "value": value})


def reading_mutations(sensor: str) -> list[Mutation]:
    out: list[Mutation] = [
        *common_mutations(READING_FIELDS, "client", MAX_CLIENT),
        *wrong_float("value"), *wrong_int("timestamp_ms"),
        ("timestamp_zero", "timestamp_ms", 0), ("timestamp_negative", "timestamp_ms", -1),
        ("timestamp_far_future_1e18", "timestamp_ms", 10**18),
        ("timestamp_beyond_2248", "timestamp_ms", MAX_READING_TS),
        ("timestamp_beyond_skew", "timestamp_ms", INGEST_MS + MAX_SKEW_MS + 1),
        ("version_2", "v", 2), ("version_string", "v", "1"), ("version_bool", "v", True),
        ("extra_field", "extra", 1),
    ]
    if sensor == "SZ":
        out += [("sz_beyond_1e100", "value", 1.0000000000000001e101),
                ("sz_float_max", "value", 1.7976931348623157e308),
                ("sz_negative_huge", "value", -1e300)]
    else:
        out += [("category_10", "value", 10), ("category_negative", "value", -1),
                ("category_fraction", "value", 2.5), ("category_huge", "value", 1e300)]
    return out


def reading_wires(sensor: str) -> st.SearchStrategy[Wire]:
    def options(row: dict[str, Any]) -> st.SearchStrategy[Wire]:
        plain = variants(row, extra_ok=False)
        if sensor == "SZ" or "value" not in row:
            return plain
        # a category written as a float with no fraction is still the category
        return st.one_of(plain, st.just(ok("valid_category_as_float", row,
                                            encode({**row, "value": float(row["value"])}))))
    return reading_rows(sensor).flatmap(options)


def hostile_readings(sensor: str) -> st.SearchStrategy[Wire]:
    base = reading_rows(sensor)
    return st.one_of(base.flatmap(lambda r: garbage(encode(r))),
                     mutated(base, reading_mutations(sensor)), misplaced(reading_wires(sensor)))


# --- feature rows (FA, FI, FD) ----------------------------------------------------------------

FEATURE_FIELDS = ("v", "client", "feature", "timestamp_ms", "value", "bin", "edges_version",
                  "window_ms", "count")


def feature_rows(feature: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "v": st.just(1), "client": st.sampled_from(CLIENTS), "feature": st.just(feature),
        "timestamp_ms": event_times(),
        "value": st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        "bin": st.integers(0, 9), "edges_version": st.sampled_from(["e1", "e2"]),
        "window_ms": st.just(600_000), "count": st.integers(1, 500),
    })


def feature_mutations(feature: str) -> list[Mutation]:
    other = "FI" if feature != "FI" else "FA"
    return [
        *common_mutations(FEATURE_FIELDS, "client", MAX_CLIENT),
        *wrong_int("bin"), *wrong_int("timestamp_ms"), *wrong_float("value"),
        ("bin_10", "bin", 10), ("bin_negative", "bin", -1),
        ("feature_other", "feature", other), ("feature_unknown", "feature", "FZ"),
        ("timestamp_zero", "timestamp_ms", 0), ("timestamp_negative", "timestamp_ms", -5),
        ("version_2", "v", 2), ("extra_field", "extra", 1),
        ("edges_version_number", "edges_version", 7),
        ("edges_version_empty", "edges_version", ""),
        ("timestamp_beyond_2248", "timestamp_ms", MAX_READING_TS),
        ("window_ms_zero", "window_ms", 0), ("window_ms_negative", "window_ms", -600_000),
        ("count_zero", "count", 0), ("count_negative", "count", -3),
    ]


def feature_wires(feature: str) -> st.SearchStrategy[Wire]:
    return feature_rows(feature).flatmap(lambda r: variants(r, extra_ok=False))


def hostile_features(feature: str) -> st.SearchStrategy[Wire]:
    base = feature_rows(feature)
    return st.one_of(base.flatmap(lambda r: garbage(encode(r))),
                     mutated(base, feature_mutations(feature)), misplaced(feature_wires(feature)))


def misplaced(valid: st.SearchStrategy[Wire]) -> st.SearchStrategy[Wire]:
    """Valid records produced without their entity's key (none, or another record's): they sit
    on another partition than their entity's, so a keyed processor must refuse them."""
    return valid.flatmap(lambda w: st.sampled_from([
        Wire("null_key", w.value, False, key=None),
        Wire("foreign_key", w.value, False, key=FOREIGN_KEY),
        Wire("empty_key", w.value, False, key=b""),
    ]))


def tagged(topic: str, wires: st.SearchStrategy[Wire]) -> st.SearchStrategy[tuple[str, Wire]]:
    """Records of one topic, tagged with it (the tests feed (topic, record) sequences)."""
    return wires.map(lambda w: (topic, w))
