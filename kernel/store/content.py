"""An artifact's content as bytes: tensors as safetensors, metadata as canonical JSON, and
the digests that make equal content get equal names. No index, no files: the store puts
these bytes where they belong."""

from __future__ import annotations

import hashlib
import importlib
import json
from typing import Any

from heirloom.core.components import State
from heirloom.core.errors import HeirloomError

#: The framework recorded for a state without tensors.
NO_TENSORS = "none"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any, what: str) -> bytes:
    """Deterministic JSON bytes, so equal content gets equal digests."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise HeirloomError(f"{what} must be JSON-serialisable: {exc}") from exc


def manifest_digest(framework: str, weights: str, metadata: str) -> str:
    """The artifact digest: it covers both blobs and how to decode them."""
    manifest = {"framework": framework, "metadata": metadata, "weights": weights}
    return sha256(canonical_json(manifest, "manifest"))


def _adapter(framework: str) -> Any:
    try:
        return importlib.import_module(f"safetensors.{framework}")
    except ImportError as exc:
        raise HeirloomError(f"cannot (de)serialise {framework} tensors: safetensors.{framework}: {exc}") from exc


def state_digest(state: State) -> str:
    """The digest ``put`` would give ``state``: equal digests, equal content."""
    framework, weights = encode_tensors(state.tensors)
    return manifest_digest(framework, sha256(weights), sha256(canonical_json(state.metadata, "state metadata")))


def encode_tensors(tensors: dict[str, Any]) -> tuple[str, bytes]:
    """``(framework, safetensors bytes)``, using the adapter of the tensors' own library."""
    frameworks = {type(t).__module__.split(".")[0] for t in tensors.values()}
    if not frameworks:
        return NO_TENSORS, b""
    if len(frameworks) > 1:
        raise HeirloomError(f"a state's tensors must come from one framework, got {', '.join(sorted(frameworks))}")
    framework = frameworks.pop()
    return framework, _adapter(framework).save(tensors)


def decode_tensors(framework: str, data: bytes) -> dict[str, Any]:
    return {} if framework == NO_TENSORS else _adapter(framework).load(data)
