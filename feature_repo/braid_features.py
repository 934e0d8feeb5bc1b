"""Braid's entities, sources, feature views and feature services, for `feast apply`.

Generated from `features/` by `serving.feast_definitions` (names, types and TTLs are never
retyped here); this module only names them so Feast finds them:

- entities `pair`, `client`;
- `candles_<d>`, `indicators_<d>` per duration in BRAID_FEAST_DURATIONS (default 1m, 1h), each
  with a Delta batch source over BRAID_FEAST_OFFLINE_ROOT and a push source `<view>_push`;
- `sensor_fa`, `sensor_fi`, `sensor_fd` (raw and binned), `sensor_sx`, `sensor_sy`;
- feature services `markets_direction_v1`, `sensors_alert_v1`.
"""

from serving.feast_definitions import client, definitions, pair

_, _views, _services = definitions()
globals().update({obj.name: obj for obj in (*_views, *_services)})

__all__ = ["client", "pair", *(obj.name for obj in (*_views, *_services))]
