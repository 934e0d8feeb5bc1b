"""Input files -> trade rows and rejected rows (batch.trade_files), no Spark."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batch.trade_files import PARSED_TRADE_SCHEMA, parse_trade_file
from features.kraken_formats import read_trades_csv
from features.schemas.trade import TRADE_ARROW_SCHEMA, TRADE_FIELDS

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")


def valid_trades(parsed: pa.Table) -> pa.Table:
    return parsed.filter(pc.is_null(parsed["reject_reason"])).select(list(TRADE_FIELDS))


def rejected(parsed: pa.Table) -> list[dict[str, object]]:
    rows = parsed.filter(pc.is_valid(parsed["reject_reason"]))
    return rows.select(["reject_reason", "row_number", "raw", "source"]).to_pylist()


@needs_data
@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.csv")))
def test_every_kraken_csv_format_parses_to_the_shared_readers_trades(name: str) -> None:
    path = str(DATA / name)
    parsed = parse_trade_file((DATA / name).read_bytes(), path, 3)
    assert parsed.schema == PARSED_TRADE_SCHEMA
    assert valid_trades(parsed).equals(read_trades_csv(path))
    assert parsed["source_index"].to_pylist() == [3] * parsed.num_rows
    assert parsed["row_index"].to_pylist() == list(range(parsed.num_rows))


def test_bad_csv_rows_are_rejected_with_reasons_and_the_others_still_parse() -> None:
    content = (
        b"time,price,volume,buy_or_sell,market_or_limit,misc\n"
        b"1525752700.0295,9431.1,2.02,b,m,\n"
        b"1525752700.5,abc,1.0,s,l,\n"  # unparseable price
        b"1525752701.0,-5,1.0,b,m,\n"  # negative price
        b"1525752702.0,0,1.0,b,m,\n"  # zero price
        b"1525752703.0,nan,1.0,b,m,\n"  # NaN price
        b"1525752704.0,9432.0\n"  # too few fields
        b"1525752705.0,9433.0,0.5,s,l,\n"
    )
    parsed = parse_trade_file(content, "XBTUSD_kraken_2018_trades.sorted.csv", 0)
    good = valid_trades(parsed)
    assert good["price"].to_pylist() == [9431.1, 9433.0]
    reasons = sorted(str(r["reject_reason"]) for r in rejected(parsed))
    assert reasons == sorted([
        "unparseable price: 'abc'",
        "price must be positive",
        "price must be positive",
        "price is not a finite number",
        "unparseable: 2 fields, expected 6",
    ])
    by_reason = {str(r["reject_reason"]): r for r in rejected(parsed)}
    assert by_reason["unparseable price: 'abc'"]["row_number"] == 3
    assert "abc" in str(by_reason["unparseable price: 'abc'"]["raw"])
    assert all(r["source"] == "XBTUSD_kraken_2018_trades.sorted.csv" for r in rejected(parsed))


def sample_trades() -> pa.Table:
    return pa.table(
        {
            "pair": ["XBT/USD", "ETH/USD", "XBT/USD"],
            "price": [100.0, 10.0, 101.0],
            "volume": [1.0, 2.0, 0.5],
            "side": ["buy", "sell", "unknown"],
            "order_type": ["limit", "market", "limit"],
            "trade_id": [1, 1, 2],
            "timestamp_ms": [1_700_000_000_000, 1_700_000_000_500, 1_700_000_001_000],
        },
        schema=TRADE_ARROW_SCHEMA,
    )


def test_parquet_and_json_lines_archives_give_the_same_trades_in_file_order() -> None:
    trades = sample_trades()
    buffer = io.BytesIO()
    pq.write_table(trades.append_column("v", pa.array([1, 1, 1])), buffer)
    from_parquet = parse_trade_file(buffer.getvalue(), "gs://b/trades-0001.parquet", 1)
    lines = "\n".join(json.dumps({"v": 1, **row}) for row in trades.to_pylist()) + "\n"
    from_jsonl = parse_trade_file(lines.encode(), "trades-0001.jsonl", 1)
    assert valid_trades(from_parquet).equals(trades)
    assert valid_trades(from_jsonl).equals(trades)


def test_broken_json_lines_are_rejected_and_the_rest_kept() -> None:
    rows = sample_trades().to_pylist()
    rows[1]["price"] = -1.0
    lines = [json.dumps(rows[0]), "{not json", json.dumps({"pair": "XBT/USD"}),
             json.dumps(rows[1]), json.dumps(rows[2])]
    parsed = parse_trade_file("\n".join(lines).encode(), "archive.jsonl", 0)
    assert valid_trades(parsed)["trade_id"].to_pylist() == [1, 2]
    reasons = [str(r["reject_reason"]) for r in rejected(parsed)]
    assert "price must be positive" in reasons
    assert sum(r.startswith("unparseable") for r in reasons) == 2


def test_invalid_categories_in_an_archive_are_rejected() -> None:
    trades = sample_trades().to_pylist()
    trades[0]["side"] = "sideways"
    trades[2]["pair"] = "XBT|USD"
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(trades, schema=TRADE_ARROW_SCHEMA), buffer)
    parsed = parse_trade_file(buffer.getvalue(), "t.parquet", 0)
    assert sorted(str(r["reject_reason"]) for r in rejected(parsed)) == [
        "pair is missing or malformed", "side is not buy, sell or unknown",
    ]


def test_an_unreadable_file_is_one_rejected_row_not_a_failure() -> None:
    parsed = parse_trade_file(b"not parquet at all", "XBTUSD_dump.parquet", 7)
    assert parsed.num_rows == 1
    row = rejected(parsed)[0]
    assert str(row["reject_reason"]).startswith("unreadable file")
    assert np.isnan(parsed["price"][0].as_py())
