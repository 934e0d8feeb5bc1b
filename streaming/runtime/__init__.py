"""The Kafka runtime: micro-batch consume, per-partition operators, checkpoints, dead letters."""
