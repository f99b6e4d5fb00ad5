"""The kernel's store plugin: opens the built-in SQLite + safetensors artifact store."""

from __future__ import annotations

from heirloom.core.hookspecs import hookimpl
from heirloom.store.artifacts import ArtifactStore


@hookimpl(trylast=True)
def heirloom_open_store(path: str | None, create: bool) -> ArtifactStore:
    """The default store; ``trylast`` so a plugin that keeps versions elsewhere answers first."""
    return ArtifactStore.default(path, create=create)
