"""What a route answers when its model serves nothing: one retryable UNAVAILABLE for every
api, saying why (nothing trained yet, an alias nobody holds, the version promoted onto it refused) and what to run."""

from __future__ import annotations

from typing import Any

from heirloom.core.components import ModelHandle
from heirloom.wire.protocol import UNAVAILABLE, RequestError

#: How long a client should wait before asking a model with no version again.
RETRY_AFTER_MS = 5000


def served_model(handle: ModelHandle) -> tuple[Any, str | None]:
    """``(model, version)`` a request should use, read once; UNAVAILABLE (retryable) when
    the model has no trained version loaded, rather than an answer from an empty model: when
    the daemon found none to load (as ``_ready`` says), whatever the model's ``ready()``."""
    model, version = handle.current
    if (version is None and handle.unavailable is not None) or not model.ready():
        reason = handle.unavailable or "no trained version yet (run heirloom train)"
        message = f"model {handle.name!r} serves nothing: {reason}"
        raise RequestError(UNAVAILABLE, message, retry_after_ms=RETRY_AFTER_MS)
    return model, version
