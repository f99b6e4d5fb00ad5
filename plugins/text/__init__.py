"""Text classification: PhraseBank/CSV/JSON-lines sources and the ``text-classifier`` model.

Importing this package never imports torch; the model imports it inside its methods.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.text.model import TextClassifier
from heirloom_plugins.text.sources import CsvSource, JsonlSource, PhraseBankSource


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("phrasebank", PhraseBankSource)
    register("csv", CsvSource)
    register("jsonl", JsonlSource)


@heirloom.hookimpl
def heirloom_register_models(register):
    register("text-classifier", TextClassifier)
