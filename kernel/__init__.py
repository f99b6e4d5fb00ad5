"""heirloom: a plugin-based microkernel for machine-learning systems that inherit.

The public surface for plugin authors and embedders is re-exported here.
"""

from importlib.metadata import PackageNotFoundError, version

from heirloom.client import Client, RemoteError
from heirloom.components import (
    Api,
    Component,
    Context,
    Model,
    NullProgress,
    Progress,
    Report,
    Resources,
    Route,
    Source,
    State,
    Versioned,
    path_field,
    ref,
)
from heirloom.errors import HeirloomError, LifecycleError, PluginError, Problem, ProfileError
from heirloom.hookspecs import hookimpl
from heirloom.kernel import Kernel
from heirloom.protocol import Buffer, RequestError

try:
    __version__ = version("heirloom")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "Api",
    "Buffer",
    "Client",
    "Component",
    "Context",
    "HeirloomError",
    "Kernel",
    "LifecycleError",
    "Model",
    "NullProgress",
    "PluginError",
    "Problem",
    "ProfileError",
    "Progress",
    "RemoteError",
    "Report",
    "RequestError",
    "Resources",
    "Route",
    "Source",
    "State",
    "Versioned",
    "__version__",
    "hookimpl",
    "path_field",
    "ref",
]
