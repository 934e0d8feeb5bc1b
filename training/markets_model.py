"""The markets model: XGBoost on `markets_direction_v1`, predicting the next candle's direction.

Rows: one per pair and candle close in `[start, end)`, the service's features as of that time
(Feast's point-in-time join, `training.training_sets`). Label: the close `horizon` candles later
is higher than this close (from the same rows: the pair's latest close at or before
t + horizon x candle length; rows whose horizon runs past the data are dropped). Baselines:
the majority class and persistence (the last `horizon` candles' direction again). The
`window_start_ms` / `window_end_ms` columns stay in the model's input (the contract) but are
blanked for the fit: absolute time must not be learnt.

    from training.markets_model import train_markets
    result = train_markets("2018-05-01", "2018-05-04", ["XBT/USD", "ETH/USD"], horizon=1)
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.model_contract import FEATURE_SERVICES, feature_columns
from serving.offline_store import EVENT_TIMESTAMP
from serving.store import open_store
from training.evaluation import persistence_baseline
from training.progress import report
from training.results import TrainResult
from training.run import PreparedData, train_and_register
from training.settings import TrainingSettings
from training.splits import TimeSplit
from training.training_sets import TrainingSet, training_set

PAIR = "pair"


def service_columns(store: FeatureStore, service_name: str) -> list[str]:
    """The contract's input columns of a feature service, in its order."""
    service = store.get_feature_service(service_name)
    return feature_columns([(p.name_to_use(), [f.name for f in p.features])
                            for p in service.feature_view_projections])


def _close_column(columns: list[str]) -> str:
    candles = [c for c in columns if c.endswith("__close") and c.startswith("candles")]
    if not candles:
        raise ValueError(f"no candle close among the service's columns {columns}")
    return candles[0]


def label_rows(frame: pd.DataFrame, close: str, horizon: int, window_ms: int
               ) -> pd.DataFrame:
    """Per row: `time_ms`, `future_close`, `previous_close` (each the pair's latest close at or
    before t ± horizon candles), `label` (future > close), `previous_up`, `ret`; rows without a
    future or previous close (the horizon or the look-back runs past the pair's data) are
    dropped. One as-of lookup over all pairs at once (keys: pair code x time)."""
    stamps = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    times = ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")).to_numpy(np.int64)
    codes, _ = pd.factorize(frame[PAIR])
    current = frame[close].to_numpy(dtype=np.float64)
    step = horizon * window_ms
    origin = int(times.min()) - step
    span = int(times.max()) + step - origin + 1
    order = np.lexsort((times, codes))
    keys = codes[order].astype(np.int64) * span + (times[order] - origin)
    first = np.full(codes.max() + 1, np.iinfo(np.int64).max)
    last = np.full(codes.max() + 1, np.iinfo(np.int64).min)
    np.minimum.at(first, codes, times)
    np.maximum.at(last, codes, times)

    def as_of(at: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(keys, codes.astype(np.int64) * span + (at - origin),
                              side="right") - 1
        found = pos >= 0
        found[found] = codes[order][pos[found]] == codes[found]
        return np.where(found, current[order][np.maximum(pos, 0)], np.nan)

    future = as_of(times + step)
    future[times + step > last[codes]] = np.nan  # the horizon runs past the data: unknown
    previous = as_of(times - step)
    previous[times - step < first[codes]] = np.nan
    out = pd.DataFrame({"time_ms": times, "future_close": future, "previous_close": previous},
                       index=frame.index)
    out["ret"] = future / current - 1.0
    out["label"] = (future > current).astype(np.int64)
    out["previous_up"] = (current > previous).astype(np.int64)
    keep = ~np.isnan(future) & ~np.isnan(previous) & np.isfinite(current)
    return out[keep]


def prepare(ts: TrainingSet, columns: list[str], horizon: int, params: dict[str, Any]
            ) -> PreparedData:
    """The labelled rows of a markets training set (see the module docstring)."""
    frame = ts.frame
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"training set lacks the service's columns {missing}")
    starts = [c for c in columns if c.endswith("__window_start_ms")]
    ends = [c for c in columns if c.endswith("__window_end_ms")]
    window_ms = int(np.nanmedian(frame[ends[0]] - frame[starts[0]]))
    labelled = label_rows(frame, _close_column(columns), horizon, window_ms)
    if labelled.empty:
        raise ValueError("no row has both a previous and a future close: widen the range")
    # only the rows and columns the model needs are copied (a year of 8 pairs is GiBs)
    pairs = frame[PAIR].loc[labelled.index].to_numpy(dtype=object)
    order = np.lexsort((pairs, labelled["time_ms"].to_numpy()))
    labelled, pairs = labelled.iloc[order], pairs[order]
    features = frame.loc[labelled.index, columns].astype("float64").reset_index(drop=True)
    labels = labelled["label"].to_numpy()
    previous_up = labelled["previous_up"].to_numpy()

    def baselines(parts: TimeSplit) -> dict[str, np.ndarray]:
        return {"persistence": persistence_baseline(labels[parts.train],
                                                    previous_up[parts.train],
                                                    previous_up[parts.test])}

    record = ts.record.to_dict()
    return PreparedData(
        pipeline="markets",
        features=features,
        labels=labels,
        times=labelled["time_ms"].to_numpy(dtype=np.int64),
        keys=pairs,
        gap_ms=horizon * window_ms,
        baselines=baselines,
        source_tags={
            "feature_service": record["feature_service"],
            "tables": ",".join(f"{path}@v{v}" for path, v in record["table_versions"].items()),
            "entity_digest": record["entity_digest"],
            "entity_rows": record["entity_rows"],
            "frame_digest": record["frame_digest"],
            "start": record["start"], "end": record["end"],
        },
        record={**record, "horizon": horizon, "window_ms": window_ms,
                "labelled_rows": len(labels)},
        params={**params, "horizon": horizon, "window_ms": window_ms},
        unused_columns=tuple(starts + ends),
        moved=(labelled["ret"].to_numpy() != 0),
    )


def train_markets(
    start: str | datetime,
    end: str | datetime,
    pairs: list[str],
    *,
    horizon: int | None = None,
    store: FeatureStore | None = None,
    profile: str = "local",
    tracking_uri: str | None = None,
    promotion_metric: str | None = None,
    promotion_margin: float | None = None,
    seed: int | None = None,
    settings: TrainingSettings | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and promote a markets model (None: the settings' value)."""
    base = settings or TrainingSettings()
    overrides = {k: v for k, v in (("horizon", horizon), ("promotion_metric", promotion_metric),
                                   ("promotion_margin", promotion_margin), ("seed", seed))
                 if v is not None}
    # validated (model_copy would not check a metric name or a horizon)
    settings = TrainingSettings.model_validate({**base.model_dump(), **overrides})
    if not pairs:
        raise ValueError("give at least one pair")
    store = store or open_store(profile)
    service = FEATURE_SERVICES["markets"]
    started = time.perf_counter()
    report(f"training set of {service} (point-in-time, {', '.join(pairs)})")
    ts = training_set(service, start=start, end=end, pairs=pairs, store=store)
    built = time.perf_counter()
    report(f"labels: {len(ts.frame):,} rows, the close {settings.horizon} candle(s) ahead")
    data = prepare(ts, service_columns(store, service), settings.horizon,
                   {"pairs": ",".join(pairs), "start": str(start), "end": str(end)})
    del ts  # Feast's frame: the model's columns are copied out, the rest is not needed
    data.seconds = {"training_set": built - started, "labels": time.perf_counter() - built}
    return train_and_register(data, settings, tracking_uri)
