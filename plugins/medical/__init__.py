"""The medical system on FHIR patient records: record analysis (the ``medical-records``
api), disease diagnosis and treatment recommendation (the ``medical-diagnosis`` and
``medical-treatment`` model and api types). docs/MEDICAL.md describes them.

Importing this package never imports torch; the models import it inside their methods.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.medical.api import DiagnosisApi, TreatmentApi
from heirloom_plugins.medical.model import DiagnosisModel
from heirloom_plugins.medical.record import RecordsApi
from heirloom_plugins.medical.treatment import TreatmentModel


@heirloom.hookimpl
def heirloom_register_models(register):
    register("medical-diagnosis", DiagnosisModel)
    register("medical-treatment", TreatmentModel)


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("medical-records", RecordsApi)
    register("medical-diagnosis", DiagnosisApi)
    register("medical-treatment", TreatmentApi)


@heirloom.hookimpl
def heirloom_register_commands(cli):
    from heirloom_plugins.medical.drug_command import medical_group

    cli.add_command(medical_group)


@heirloom.hookimpl
def heirloom_register_consoles(register):
    from heirloom_plugins.medical.console import CONSOLE

    register("medical", CONSOLE)
