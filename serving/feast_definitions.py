"""The Feast objects of Braid, generated from the `features/` definitions.

Names, types and TTLs come from the schemas and declarations in `features/`
(`features/schemas/candle.py` arrow schemas, whose indicator columns are
`features.indicators.INDICATOR_COLUMNS`; `features/sensors/schemas.py`): adding an indicator in
`features/` adds its Feast feature, nothing here is retyped. `feature_repo/*.py` only imports
these objects so `feast apply` registers them.

- entities `pair` and `client`;
- per candle duration `d` (setting `BRAID_FEAST_DURATIONS`): `candles_<d>` and
  `indicators_<d>`, batch source = the backfill's Delta table filtered on `window_ms`, push
  source `<view>_push` for live rows; event timestamp = the window's end (a candle is known once
  its window has ended, so a training row at time t never sees a candle still open at t);
- per sensors topic a `client` view: `sensor_fa`, `sensor_fi`, `sensor_fd` (raw value and bin),
  `sensor_sx`, `sensor_sy` (latest category), event timestamp = the reading's time;
- feature services `markets_direction_v1` (candles and indicators of the first duration; the
  indicators without the window bounds and close the candles already give: no feature name
  appears twice in a service) and `sensors_alert_v1` (the model's vector: SX, SY, FA, FI, FD
  bins).
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.data_format import DeltaFormat
from feast.types import Float64, Int64, PrimitiveFeastType, String
from feast.value_type import ValueType

from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from features.sensors.schemas import (
    CATEGORICAL_SENSORS,
    FEATURE_TABLE_SCHEMA,
    FEATURES,
    VECTOR_FIELDS,
)
from features.sensors.window_math import WINDOW_MS
from features.windows import format_duration, parse_duration_ms
from serving.offline_store import EVENT_TIMESTAMP, SENSOR_TAG, TIMESTAMP_MS_TAG, WINDOW_MS_TAG
from serving.settings import FeastSettings

STALE_AFTER_WINDOWS = 2
"""A candle view's TTL in windows: the last closed window, or one more while the next closes."""

_FEAST_TYPES: dict[pa.DataType, PrimitiveFeastType] = {
    pa.float64(): Float64,
    pa.int64(): Int64,
    pa.string(): String,
}

pair = Entity(name="pair", join_keys=["pair"], value_type=ValueType.STRING,
              description="A Kraken trading pair, e.g. XBT/USD")
client = Entity(name="client", join_keys=["client"], value_type=ValueType.STRING,
                description="A sensors client (Kafka key of SX, SY, SZ)")


def feast_fields(schema: pa.Schema, exclude: tuple[str, ...]) -> list[Field]:
    """Feast fields of `schema`'s columns outside `exclude`, typed from the arrow types."""
    fields = []
    for arrow_field in schema:
        if arrow_field.name in exclude:
            continue
        if arrow_field.type not in _FEAST_TYPES:
            raise TypeError(f"no Feast type for column {arrow_field.name}: {arrow_field.type}")
        fields.append(Field(name=arrow_field.name, dtype=_FEAST_TYPES[arrow_field.type]))
    return fields


def _delta_source(name: str, path: str, timestamp_ms: str, window_ms: int | None,
                  sensor: str | None = None) -> FileSource:
    tags = {TIMESTAMP_MS_TAG: timestamp_ms}
    if window_ms is not None:
        tags[WINDOW_MS_TAG] = str(window_ms)
    if sensor is not None:
        tags[SENSOR_TAG] = sensor
    return FileSource(name=name, path=path, file_format=DeltaFormat(),
                      timestamp_field=EVENT_TIMESTAMP, tags=tags)


def _view(name: str, entity: Entity, schema: pa.Schema, exclude: tuple[str, ...],
          batch: FileSource, ttl: timedelta, description: str) -> FeatureView:
    push = PushSource(name=f"{name}_push", batch_source=batch)
    return FeatureView(name=name, entities=[entity], ttl=ttl,
                       schema=feast_fields(schema, exclude), source=push, online=True,
                       description=description,
                       tags={"braid.generated": "serving.feast_definitions"})


def market_views(settings: FeastSettings) -> list[FeatureView]:
    """`candles_<d>` and `indicators_<d>` for every configured duration."""
    views = []
    key_columns = ("pair", "window_ms")  # the entity and the view's constant duration
    for text in settings.durations:
        window_ms = parse_duration_ms(text)
        label = format_duration(window_ms)
        ttl = timedelta(milliseconds=window_ms * STALE_AFTER_WINDOWS)
        for table, schema in (("candles", CANDLE_ARROW_SCHEMA),
                              ("indicators", INDICATOR_ARROW_SCHEMA)):
            name = f"{table}_{label}"
            source = _delta_source(f"{name}_offline", settings.table_uri(table),
                                   "window_end_ms", window_ms)
            views.append(_view(name, pair, schema, key_columns, source, ttl,
                               f"{label} {table} per pair (features/schemas/candle.py)"))
    return views


def sensor_views(settings: FeastSettings) -> list[FeatureView]:
    """One view per sensors topic, each with its own event time (the reading's):
    `sensor_fa`, `sensor_fi`, `sensor_fd` (raw value and bin, from the backfill's wide
    `sensor_features` table) and `sensor_sx`, `sensor_sy` (the latest category). Separate views
    keep "newer wins" per topic: an FA row never hides a later FI row's time."""
    ttl = timedelta(milliseconds=WINDOW_MS)
    features_source = _delta_source("sensor_features_offline",
                                    settings.table_uri(settings.sensor_features_table),
                                    "timestamp_ms", None)
    views = []
    for name in FEATURES:
        keep = (name, f"{name}_bin")
        exclude = tuple(n for n in FEATURE_TABLE_SCHEMA.names if n not in keep)
        views.append(_view(f"sensor_{name.lower()}", client, FEATURE_TABLE_SCHEMA, exclude,
                           features_source, ttl,
                           f"{name} of the latest SZ reading's window, raw and binned"))
    for name in CATEGORICAL_SENSORS:
        # the sensors backfill's readings table: one row per valid reading, this sensor's rows
        readings_source = _delta_source(f"sensor_{name.lower()}_offline",
                                        settings.table_uri(settings.sensor_readings_table),
                                        "timestamp_ms", None, sensor=name)
        schema = pa.schema([pa.field(name, pa.int64())])
        views.append(_view(f"sensor_{name.lower()}", client, schema, (), readings_source, ttl,
                           f"The latest {name} category"))
    return views


def distinct_features(views: list[FeatureView]) -> list[FeatureView]:
    """`views` projected so that no feature name appears twice: each view keeps the features
    no earlier view already has (Feast's retrieval without `full_feature_names=True` refuses
    a service whose views repeat a name; the candle and indicator views both carry the
    window bounds and the close)."""
    seen: set[str] = set()
    projected = []
    for view in views:
        kept = [f.name for f in view.features if f.name not in seen]
        seen.update(kept)
        projected.append(view if len(kept) == len(view.features) else view[kept])
    return projected


def feature_services(markets: list[FeatureView], sensors: list[FeatureView]
                     ) -> list[FeatureService]:
    """The models' feature services (no feature name twice in one)."""
    first = {view.name: view for view in markets[:2]}
    by_name = {view.name: view for view in sensors}
    # the model's input order; categories as they are, window features by their bin
    vector = [by_name[f"sensor_{name.lower()}"] if name in CATEGORICAL_SENSORS
              else by_name[f"sensor_{name.lower()}"][[f"{name}_bin"]] for name in VECTOR_FIELDS]
    return [
        FeatureService(name="markets_direction_v1",
                       features=[*distinct_features(list(first.values()))],
                       description="Direction of the next candle: candles and indicators "
                                   f"of {', '.join(first)}"),
        FeatureService(
            name="sensors_alert_v1",
            features=vector,
            description=f"The alert model's vector {', '.join(VECTOR_FIELDS)} (bins)"),
    ]


def definitions(settings: FeastSettings | None = None
                ) -> tuple[list[Entity], list[FeatureView], list[FeatureService]]:
    """Every Feast object of Braid for `settings` (default: from the environment)."""
    settings = settings or FeastSettings()
    markets = market_views(settings)
    sensors = sensor_views(settings)
    return [pair, client], markets + sensors, feature_services(markets, sensors)
