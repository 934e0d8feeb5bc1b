"""The prediction API: latest stream predictions, predictions computed now, sensor alerts.

`create_app(Services(...))` builds the FastAPI app over live components (the feature service
reader, the model watcher, the followers of the prediction topics); `braid api` wires them from
settings and serves it with uvicorn. OpenAPI at `/openapi.json`, docs at `/docs`.

- `GET /predict/{pair}`: the latest prediction the stream predictor published for the pair.
- `POST /predict` `{"pair": ...}`: computed now from the pair's online features (the feature
  service the model was trained on) with the current champion. Features missing in a view,
  older than the view's TTL or NaN: 409 with the reason, never a default.
- `GET /alerts/{client}`: the latest alert decision of the sensors join for the client.
- `GET /health`: liveness and what is loaded (never needs the token).
Unknown pair or client: 404 naming it. A malformed body: FastAPI's 422, whose `loc` names the
field. With a token set (`BRAID_API_TOKEN`), a request without `Authorization: Bearer <token>`
gets a 401.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from features.freshness import stale_reason
from serving.api.latest import LatestByKey
from serving.models import ModelWatcher
from serving.online_features import NO_ROW, FeatureServiceReader


@dataclass
class Services:
    """What the API reads; a follower left None answers 404 for everything it would serve."""

    reader: FeatureServiceReader
    watcher: ModelWatcher
    predictions: LatestByKey | None = None
    alerts: LatestByKey | None = None
    token: str | None = None


class Problem(BaseModel):
    detail: str = Field(description="What went wrong, in one line.")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair: str = Field(min_length=1, max_length=64, description="A trading pair, e.g. XBT/USD.",
                      examples=["XBT/USD"])


class Prediction(BaseModel):
    pair: str
    window_end_ms: int = Field(description="End of the candle the features describe (epoch ms).")
    prediction: float = Field(ge=0, le=1, description="P(the next candle closes higher).")
    model_name: str
    model_version: str
    feature_service: str
    feature_age_ms: int | None = Field(
        description="Age of the features: when predicted (POST) or when the indicator row was "
                    "published (stream), minus their event time.")
    source: str = Field(description="`stream` (the predictor's record) or `online` (now).")


class Alert(BaseModel):
    client: str
    timestamp_ms: int
    probability: float
    alert: bool
    threshold: float
    model_version: str
    edges_version: str
    vector: list[int]


class Health(BaseModel):
    status: str
    model: str | None = Field(description="The markets model served by POST /predict.")
    feature_service: str
    predictions_followed: bool
    alerts_followed: bool
    caught_up: bool = Field(description="Every followed topic has been read to its end once "
                                        "(GET routes answer from the whole lookback; before "
                                        "that a 404 may only mean not read yet).")


_BEARER = HTTPBearer(auto_error=False, description="BRAID_API_TOKEN, when set.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
PairPath = Annotated[str, Path(min_length=1, max_length=64, description="e.g. XBT/USD")]
ClientPath = Annotated[str, Path(min_length=1, max_length=128)]
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token."}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown pair or client."}}


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Braid predictions",
        version="1",
        description="Next-candle direction predictions (markets) and alerts (sensors), from the "
                    "stream and computed now from Feast's online features.")

    def authorized(credentials: Credentials) -> None:
        if services.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), services.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    @app.get("/health", response_model=Health, summary="Liveness and what is loaded")
    def health() -> Health:
        model = services.watcher.current
        followed = [f for f in (services.predictions, services.alerts) if f is not None]
        return Health(status="ok", model=model.label if model else None,
                      feature_service=services.reader.name,
                      predictions_followed=services.predictions is not None,
                      alerts_followed=services.alerts is not None,
                      caught_up=all(f.caught_up.is_set() for f in followed))

    @app.get("/predict/{pair:path}", response_model=Prediction, dependencies=guarded,
             responses={**_AUTH, **_NOT_FOUND}, summary="The latest stream prediction of a pair")
    def latest_prediction(pair: PairPath) -> Prediction:
        record = services.predictions.get(pair) if services.predictions else None
        if record is None:
            raise HTTPException(404, f"no stream prediction for pair {pair!r}")
        return Prediction.model_validate({"source": "stream", **{k: record.get(k) for k in (
            "pair", "window_end_ms", "prediction", "model_name", "model_version",
            "feature_service", "feature_age_ms")}})

    @app.post("/predict", response_model=Prediction, dependencies=guarded,
              responses={**_AUTH, **_NOT_FOUND,
                         409: {"model": Problem,
                               "description": "Features missing in a view, stale or NaN."},
                         503: {"model": Problem,
                               "description": "No model loaded, or the online store is down."}},
              summary="A prediction computed now from the pair's online features")
    def predict_now(request: PredictRequest) -> Prediction:
        return _predict_now(services, request.pair)

    @app.get("/alerts/{client}", response_model=Alert, dependencies=guarded,
             responses={**_AUTH, **_NOT_FOUND}, summary="The latest alert decision of a client")
    def latest_alert(client: ClientPath) -> Alert:
        record = services.alerts.get(client) if services.alerts else None
        if record is None:
            raise HTTPException(404, f"no alert decision for client {client!r}")
        return Alert.model_validate({k: record.get(k) for k in Alert.model_fields})

    return app


def _predict_now(services: Services, pair: str) -> Prediction:
    reader = services.reader
    try:
        vectors = reader.read([pair])
    except Exception as error:  # the online store is down: say so, never a bare 500
        raise HTTPException(503, f"online store unavailable: {error}") from error
    event_ms = vectors.event_ms[0]
    if (event_ms == NO_ROW).all():
        raise HTTPException(404, f"no online features for pair {pair!r}")
    now_ms = int(time.time() * 1000)
    for v, view in enumerate(reader.views):
        if event_ms[v] == NO_ROW:
            raise HTTPException(409, f"missing: {view.name} has no row for {pair!r}")
        stale = stale_reason(view.name, int(event_ms[v]), now_ms, view.ttl_ms)  # as of now
        if stale:
            raise HTTPException(409, f"{stale} (pair {pair!r})")
    values = vectors.values
    nan = np.flatnonzero(np.isnan(values[0]))
    if nan.size:
        names = ", ".join(reader.columns[j] for j in nan[:3])
        raise HTTPException(409, f"nan: {names}{' and more' if nan.size > 3 else ''} "
                                 f"NaN or null for {pair!r}")
    model = services.watcher.current
    if model is None:
        raise HTTPException(503, f"no model loaded from {services.watcher.uri}")
    probability = float(model.predict_proba(values)[0])
    oldest = int(event_ms.min())
    return Prediction(pair=pair, window_end_ms=oldest, prediction=probability,
                      model_name=model.name, model_version=model.version,
                      feature_service=reader.name, feature_age_ms=now_ms - oldest,
                      source="online")
