"""Sinks: where processed streams leave Kafka (Parquet archives on GCS or local disk)."""
