"""Braid's serving layer: the Feast definitions generated from `features/`, the offline store
adapter that reads the Delta tables, and the readers of served values."""
