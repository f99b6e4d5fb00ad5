"""heirloom: a plugin-based microkernel for machine-learning systems that inherit.

The public surface for plugin authors and embedders is re-exported here; plugins import
only these names, never ``heirloom.core``/``store``/``wire``/``cli`` internals. The layers
underneath (docs/ARCHITECTURE.md) are ``core`` <- ``store`` <- ``wire`` <- ``cli``.
"""

from heirloom.core.components import (
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
    path_field,
    path_fields,
    ref,
)
from heirloom.core.consoles import Console, ConsoleRequest
from heirloom.core.cores import cpu_share
from heirloom.core.errors import (
    HeirloomError,
    LifecycleError,
    PluginError,
    Problem,
    ProfileError,
    ResourceExhaustedError,
)
from heirloom.core.hookspecs import hookimpl
from heirloom.core.kernel import Kernel
from heirloom.core.limits import nests_deeper, shortened
from heirloom.core.paths import data_root, home
from heirloom.core.placement import WorkerPool
from heirloom.core.splits import stratified_holdout
from heirloom.core.version import VERSION as __version__
from heirloom.datasets import DataFile, Dataset
from heirloom.store.artifacts import ArtifactStore
from heirloom.store.feedback import FeedbackLog
from heirloom.store.logs import AppendLog, LogCursor, LogFull, LogWriteError, log_path
from heirloom.wire.aclient import AsyncClient
from heirloom.wire.auth import CurveClient
from heirloom.wire.client import Client, RemoteError, Reply
from heirloom.wire.daemon import in_one_process
from heirloom.wire.handles import served_model
from heirloom.wire.labels import check_label, label_pattern
from heirloom.wire.onloop import LoopDaemon, served_on_loop
from heirloom.wire.protocol import Buffer, RequestError
from heirloom.wire.writes import durable_write

__all__ = [
    "Api",
    "AppendLog",
    "ArtifactStore",
    "AsyncClient",
    "Buffer",
    "Client",
    "ClientLimits",
    "Component",
    "Console",
    "ConsoleRequest",
    "Context",
    "CurveClient",
    "DataFile",
    "Dataset",
    "FeedbackLog",
    "HeirloomError",
    "Kernel",
    "LifecycleError",
    "LogCursor",
    "LogFull",
    "LogWriteError",
    "LoopDaemon",
    "Model",
    "ModelHandle",
    "NullProgress",
    "PluginError",
    "Problem",
    "ProfileError",
    "Progress",
    "RemoteError",
    "Reply",
    "Report",
    "RequestError",
    "ResourceExhaustedError",
    "Resources",
    "Route",
    "Source",
    "State",
    "Versioned",
    "WorkerPool",
    "__version__",
    "above",
    "at_least",
    "check_label",
    "cpu_share",
    "data_root",
    "durable_write",
    "home",
    "hookimpl",
    "in_one_process",
    "label_pattern",
    "log_path",
    "nests_deeper",
    "path_field",
    "path_fields",
    "ref",
    "served_model",
    "served_on_loop",
    "shortened",
    "stratified_holdout",
]
