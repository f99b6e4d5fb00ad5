"""Text classification: PhraseBank/CSV/JSON-lines/feedback sources, the ``text-classifier``
model, the ``classify`` api and the ``label-monitor`` api (alerts on a label's share).

Importing this package never imports torch; the model imports it inside its methods.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.text.api import ClassifyApi
from heirloom_plugins.text.model import TextClassifier
from heirloom_plugins.text.monitor import LabelMonitorApi
from heirloom_plugins.text.sources import CsvSource, FeedbackSource, JsonlSource, PhraseBankSource
from heirloom_plugins.text.union import UnionSource


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("phrasebank", PhraseBankSource)
    register("csv", CsvSource)
    register("jsonl", JsonlSource)
    register("feedback", FeedbackSource)
    register("union", UnionSource)


@heirloom.hookimpl
def heirloom_register_models(register):
    register("text-classifier", TextClassifier)


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("classify", ClassifyApi)
    register("label-monitor", LabelMonitorApi)
