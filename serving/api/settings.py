"""Settings of the prediction API (prefix `BRAID_API_`), from the environment or `.env`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Where `braid api` listens, who may call it, what it reads."""

    model_config = SettingsConfigDict(env_prefix="BRAID_API_", env_file=".env", extra="ignore")

    # Address to bind: loopback unless told otherwise.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # When set, every request but /health and the docs needs `Authorization: Bearer <token>`.
    token: SecretStr | None = None
    # How far back `GET /predict/{pair}` and `GET /alerts/{client}` look in the prediction
    # topics when the API starts (it follows them from there).
    lookback: str = "1d"
    # Feast profile of the online store `POST /predict` reads (local, redis, gcp).
    feast_profile: str = "local"
