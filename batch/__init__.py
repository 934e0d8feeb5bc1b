"""Braid's batch layer: Spark backfills that rebuild the offline store (Delta tables).

The jobs here are engines: the feature math (windows, lateness, candles, indicators, trade
validation) comes from `features/`, so a backfill gives the same values as the speed layer.
This package imports `features` and its own modules only.
"""
