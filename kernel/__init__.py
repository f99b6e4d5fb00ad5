"""heirloom: a plugin-based microkernel for machine-learning systems that inherit.

The public surface for plugin authors and embedders is re-exported here; plugins import
only these names, never ``heirloom.core``/``store``/``wire``/``cli`` internals. The layers
underneath (docs/ARCHITECTURE.md) are ``core`` <- ``store`` <- ``wire`` <- ``cli``.

Each name is imported on first use (PEP 562), so ``import heirloom`` costs only what a
program touches: ``heirloom call`` needs the client, not the profile machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heirloom.core.components import (
        MIB_LIMIT,
        Api,
        ClientLimits,
        Component,
        Context,
        Model,
        ModelHandle,
        NullProgress,
        Progress,
        Report,
        Resources,
        Route,
        Source,
        State,
        Versioned,
        above,
        at_least,
        manager_name,
        mebibytes,
        path_field,
        path_fields,
        ref,
        route_limit,
    )
    from heirloom.core.consoles import Console, ConsoleRequest
    from heirloom.core.errors import (
        ForeignState,
        HeirloomError,
        LifecycleError,
        PluginError,
        Problem,
        ProfileError,
        ResourceExhaustedError,
        did_you_mean,
    )
    from heirloom.core.hookspecs import hookimpl
    from heirloom.core.kernel import Kernel
    from heirloom.core.paths import data_root, home
    from heirloom.core.placement import WorkerPool
    from heirloom.core.version import VERSION as __version__
    from heirloom.datasets import DataFile, Dataset
    from heirloom.files import NotRegularFile, hash_regular, irregular, open_regular, read_regular
    from heirloom.limits import nests_deeper, shortened
    from heirloom.owners import foreign_owner
    from heirloom.splits import stratified_holdout
    from heirloom.store.artifacts import ArtifactStore, Promotion, StoreMissing
    from heirloom.store.compare import LEFT_OUT, LEFT_OUT_OF, SEEN_IN_TRAINING, PromotionRefused
    from heirloom.store.feedback import FeedbackLog
    from heirloom.store.labels import (
        LABEL_SCHEMA,
        MAX_LABEL_CHARS,
        OPTIONAL_MARKS,
        blank,
        label_pattern,
        label_problem,
        printed_form,
        unprintable,
    )
    from heirloom.store.log_records import future_time, lone_surrogate
    from heirloom.store.logs import (
        AppendLog,
        LogCursor,
        LogFull,
        LogWriteError,
        log_path,
    )
    from heirloom.store.parents import warm_start_parent
    from heirloom.store.reading import SourceReadError, records_fingerprint
    from heirloom.store.refs import RefError
    from heirloom.toml_bounds import MAX_PROFILE_BYTES, TOO_LONG_INTEGER, parse_bounded
    from heirloom.wire.aclient import AsyncClient
    from heirloom.wire.auth import CurveClient
    from heirloom.wire.bodies import MAX_CONTAINERS
    from heirloom.wire.client import (
        Client,
        ConnectionClosed,
        DeadlineExceeded,
        Internal,
        InvalidArgument,
        NoReply,
        NotFound,
        PermissionDenied,
        RemoteError,
        Reply,
        ResourceExhausted,
        Unauthenticated,
        Unavailable,
    )
    from heirloom.wire.cores import cpu_share
    from heirloom.wire.daemon import in_one_process
    from heirloom.wire.handles import served_model
    from heirloom.wire.inputs import list_limit, one_of, text_limit
    from heirloom.wire.labels import check_label
    from heirloom.wire.onloop import LoopDaemon, served_on_loop
    from heirloom.wire.protocol import IDEMPOTENCY_KEY_LIMIT, Buffer, RequestError
    from heirloom.wire.throttle import Every
    from heirloom.wire.writes import durable_write

#: Where each public name lives.
_EXPORTS = {
    "__version__": "heirloom.core.version",
    "above": "heirloom.core.components",
    "Api": "heirloom.core.components",
    "AppendLog": "heirloom.store.logs",
    "ArtifactStore": "heirloom.store.artifacts",
    "Promotion": "heirloom.store.artifacts",
    "StoreMissing": "heirloom.store.artifacts",
    "AsyncClient": "heirloom.wire.aclient",
    "at_least": "heirloom.core.components",
    "MIB_LIMIT": "heirloom.core.components",
    "route_limit": "heirloom.core.components",
    "mebibytes": "heirloom.core.components",
    "Buffer": "heirloom.wire.protocol",
    "blank": "heirloom.store.labels",
    "check_label": "heirloom.wire.labels",
    "printed_form": "heirloom.store.labels",
    "unprintable": "heirloom.store.labels",
    "Client": "heirloom.wire.client",
    "ClientLimits": "heirloom.core.components",
    "Component": "heirloom.core.components",
    "Console": "heirloom.core.consoles",
    "ConsoleRequest": "heirloom.core.consoles",
    "Context": "heirloom.core.components",
    "cpu_share": "heirloom.wire.cores",
    "CurveClient": "heirloom.wire.auth",
    "data_root": "heirloom.core.paths",
    "did_you_mean": "heirloom.core.errors",
    "DataFile": "heirloom.datasets",
    "Dataset": "heirloom.datasets",
    "durable_write": "heirloom.wire.writes",
    "Every": "heirloom.wire.throttle",
    "FeedbackLog": "heirloom.store.feedback",
    "ForeignState": "heirloom.core.errors",
    "HeirloomError": "heirloom.core.errors",
    "home": "heirloom.core.paths",
    "hookimpl": "heirloom.core.hookspecs",
    "in_one_process": "heirloom.wire.daemon",
    "irregular": "heirloom.files",
    "Kernel": "heirloom.core.kernel",
    "manager_name": "heirloom.core.components",
    "label_pattern": "heirloom.store.labels",
    "label_problem": "heirloom.store.labels",
    "MAX_LABEL_CHARS": "heirloom.store.labels",
    "OPTIONAL_MARKS": "heirloom.store.labels",
    "LABEL_SCHEMA": "heirloom.store.labels",
    "LifecycleError": "heirloom.core.errors",
    "log_path": "heirloom.store.logs",
    "lone_surrogate": "heirloom.store.log_records",
    "future_time": "heirloom.store.log_records",
    "LogCursor": "heirloom.store.logs",
    "LogFull": "heirloom.store.logs",
    "LogWriteError": "heirloom.store.logs",
    "LoopDaemon": "heirloom.wire.onloop",
    "Model": "heirloom.core.components",
    "ModelHandle": "heirloom.core.components",
    "nests_deeper": "heirloom.limits",
    "open_regular": "heirloom.files",
    "foreign_owner": "heirloom.owners",
    "read_regular": "heirloom.files",
    "hash_regular": "heirloom.files",
    "records_fingerprint": "heirloom.store.reading",
    "parse_bounded": "heirloom.toml_bounds",
    "MAX_PROFILE_BYTES": "heirloom.toml_bounds",
    "TOO_LONG_INTEGER": "heirloom.toml_bounds",
    "NotRegularFile": "heirloom.files",
    "NullProgress": "heirloom.core.components",
    "path_field": "heirloom.core.components",
    "path_fields": "heirloom.core.components",
    "PluginError": "heirloom.core.errors",
    "Problem": "heirloom.core.errors",
    "ProfileError": "heirloom.core.errors",
    "Progress": "heirloom.core.components",
    "ref": "heirloom.core.components",
    "RemoteError": "heirloom.wire.client",
    "InvalidArgument": "heirloom.wire.client",
    "NotFound": "heirloom.wire.client",
    "NoReply": "heirloom.wire.client",
    "ResourceExhausted": "heirloom.wire.client",
    "Unavailable": "heirloom.wire.client",
    "ConnectionClosed": "heirloom.wire.client",
    "DeadlineExceeded": "heirloom.wire.client",
    "Unauthenticated": "heirloom.wire.client",
    "PermissionDenied": "heirloom.wire.client",
    "Internal": "heirloom.wire.client",
    "IDEMPOTENCY_KEY_LIMIT": "heirloom.wire.protocol",
    "MAX_CONTAINERS": "heirloom.wire.bodies",
    "PromotionRefused": "heirloom.store.compare",
    "LEFT_OUT": "heirloom.store.compare",
    "LEFT_OUT_OF": "heirloom.store.compare",
    "RefError": "heirloom.store.refs",
    "Reply": "heirloom.wire.client",
    "Report": "heirloom.core.components",
    "RequestError": "heirloom.wire.protocol",
    "ResourceExhaustedError": "heirloom.core.errors",
    "Resources": "heirloom.core.components",
    "Route": "heirloom.core.components",
    "SEEN_IN_TRAINING": "heirloom.store.compare",
    "served_model": "heirloom.wire.handles",
    "served_on_loop": "heirloom.wire.onloop",
    "shortened": "heirloom.limits",
    "Source": "heirloom.core.components",
    "SourceReadError": "heirloom.store.reading",
    "State": "heirloom.core.components",
    "stratified_holdout": "heirloom.splits",
    "warm_start_parent": "heirloom.store.parents",
    "text_limit": "heirloom.wire.inputs",
    "list_limit": "heirloom.wire.inputs",
    "one_of": "heirloom.wire.inputs",
    "Versioned": "heirloom.core.components",
    "WorkerPool": "heirloom.core.placement",
}
#: The kernel's packages, reachable as attributes once imported (``heirloom.store.artifacts``).
_PACKAGES = ("cli", "core", "datasets", "options", "reports", "store", "testing", "wire")


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata: 70 ms
        value = importlib.import_module("heirloom.core.version").VERSION
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _PACKAGES:
        value = importlib.import_module(f"heirloom.{name}")
    else:
        raise AttributeError(f"module 'heirloom' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "IDEMPOTENCY_KEY_LIMIT",
    "LABEL_SCHEMA",
    "LEFT_OUT",
    "LEFT_OUT_OF",
    "MAX_CONTAINERS",
    "MAX_LABEL_CHARS",
    "MAX_PROFILE_BYTES",
    "MIB_LIMIT",
    "OPTIONAL_MARKS",
    "SEEN_IN_TRAINING",
    "TOO_LONG_INTEGER",
    "Api",
    "AppendLog",
    "ArtifactStore",
    "AsyncClient",
    "Buffer",
    "Client",
    "ClientLimits",
    "Component",
    "ConnectionClosed",
    "Console",
    "ConsoleRequest",
    "Context",
    "CurveClient",
    "DataFile",
    "Dataset",
    "DeadlineExceeded",
    "Every",
    "FeedbackLog",
    "ForeignState",
    "HeirloomError",
    "Internal",
    "InvalidArgument",
    "Kernel",
    "LifecycleError",
    "LogCursor",
    "LogFull",
    "LogWriteError",
    "LoopDaemon",
    "Model",
    "ModelHandle",
    "NoReply",
    "NotFound",
    "NotRegularFile",
    "NullProgress",
    "PermissionDenied",
    "PluginError",
    "Problem",
    "ProfileError",
    "Progress",
    "Promotion",
    "PromotionRefused",
    "RefError",
    "RemoteError",
    "Reply",
    "Report",
    "RequestError",
    "ResourceExhausted",
    "ResourceExhaustedError",
    "Resources",
    "Route",
    "Source",
    "SourceReadError",
    "State",
    "StoreMissing",
    "Unauthenticated",
    "Unavailable",
    "Versioned",
    "WorkerPool",
    "__version__",
    "above",
    "at_least",
    "blank",
    "check_label",
    "cpu_share",
    "data_root",
    "did_you_mean",
    "durable_write",
    "foreign_owner",
    "future_time",
    "hash_regular",
    "home",
    "hookimpl",
    "in_one_process",
    "irregular",
    "label_pattern",
    "label_problem",
    "list_limit",
    "log_path",
    "lone_surrogate",
    "manager_name",
    "mebibytes",
    "nests_deeper",
    "one_of",
    "open_regular",
    "parse_bounded",
    "path_field",
    "path_fields",
    "printed_form",
    "read_regular",
    "records_fingerprint",
    "ref",
    "route_limit",
    "served_model",
    "served_on_loop",
    "shortened",
    "stratified_holdout",
    "text_limit",
    "unprintable",
    "warm_start_parent",
]
