"""When a served feature row is too old to predict from: one rule, for every reader.

A feature view's row is **stale** at a moment `as_of_ms` when its event time lies more than the
view's TTL before that moment: `as_of_ms - event_ms > ttl_ms`. A row exactly one TTL old is still
fresh, as in Feast's point-in-time rule for training sets (a row counts for an entity row at t
while `t - ttl <= row time <= t`), so a model never serves a row its training set would not
have used. A TTL of 0 means the view has none.

Who decides chooses the moment, never the rule:
- the markets predictor decides for an indicator row as of that row's Kafka timestamp (when it
  was published), so a replay after a restart decides as the first run did;
- the prediction API decides as of the request, i.e. the wall clock.
"""

from __future__ import annotations


def is_stale(event_ms: int, as_of_ms: int, ttl_ms: int) -> bool:
    """True if a row of event time `event_ms` is past a TTL of `ttl_ms` at `as_of_ms`."""
    return ttl_ms > 0 and as_of_ms - event_ms > ttl_ms


def stale_reason(view: str, event_ms: int, as_of_ms: int, ttl_ms: int) -> str | None:
    """`stale: ...` naming the view, the row's age and the TTL; None when the row is fresh."""
    if not is_stale(event_ms, as_of_ms, ttl_ms):
        return None
    return (f"stale: {view} row is {as_of_ms - event_ms} ms old, over the view's TTL of "
            f"{ttl_ms} ms")
