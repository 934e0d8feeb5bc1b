"""Prefect flows and deployments of Braid's jobs (see README.md)."""
