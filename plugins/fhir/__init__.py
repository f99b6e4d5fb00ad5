"""The ``fhir`` source: FHIR R4 bundles and NDJSON bulk exports as patient records.

``parse`` reads files (the lean path), ``references`` resolves references, ``records``
builds patient records, ``scan`` streams a pass over a set, ``validate`` adds full
validation with fhir.resources, ``source`` is the component a profile configures.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.fhir.source import FhirSource


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("fhir", FhirSource)
