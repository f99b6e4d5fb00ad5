"""Customer service: the StackFAQ source, out-of-scope hold-outs, handoff resolutions as a
source, and the ``support`` api (intent + FAQ answers + handoff to a person).

The models it serves come from the ``encoder`` plugin (``encoder-classifier``,
``encoder-retriever``), wired in the profile: this package never imports them.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.support.api import SupportApi
from heirloom_plugins.support.console import CONSOLE
from heirloom_plugins.support.sources import HandoffSource, OutOfScopeSource, StackFaqSource


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("stackfaq", StackFaqSource)
    register("out-of-scope", OutOfScopeSource)
    register("handoffs", HandoffSource)


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("support", SupportApi)


@heirloom.hookimpl
def heirloom_register_consoles(register):
    register("support", CONSOLE)
