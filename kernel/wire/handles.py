"""What a route answers when its model serves nothing: one retryable UNAVAILABLE for every
api, saying why (nothing trained yet, an alias nobody holds, the version promoted onto it refused) and what to run."""

from __future__ import annotations

from typing import Any

from heirloom.core.components import ModelHandle
from heirloom.core.errors import described
from heirloom.wire.protocol import UNAVAILABLE, RequestError

#: How long a client should wait before asking a model with no version again.
RETRY_AFTER_MS = 5000


def served_model(handle: ModelHandle) -> tuple[Any, str | None]:
    """``(model, version)`` a request should use, read once; UNAVAILABLE (retryable) when
    the model has no trained version loaded, rather than an answer from an empty model: when
    the daemon found none to load (as ``_ready`` says), whatever the model's ``ready()``; a ``ready()`` that raises
    (a plugin's bug) counts as not ready, as ``_ready`` counts it, not as the calling api's INTERNAL."""
    model, version = handle.current
    reason = handle.unavailable if version is None else None
    try:
        if reason is None and not model.ready():
            reason = "no trained version yet (run heirloom train on this profile)"
    except Exception as exc:  # noqa: BLE001 - counts as not ready, as for _ready (which logs whose it is)
        reason = f"its ready() raised {described(exc)}"
    if reason is not None:
        message = f"model {handle.name!r} serves nothing: {reason}"
        raise RequestError(UNAVAILABLE, message, retry_after_ms=RETRY_AFTER_MS)
    return model, version
