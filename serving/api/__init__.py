"""The prediction API (FastAPI): see README.md of serving/."""
