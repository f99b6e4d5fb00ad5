"""A stored encoder's configuration, checked against its own weights before a network is built.

Building ``BertModel(config)`` allocates every weight the configuration declares before the
stored ones are copied in: a damaged or hostile state whose metadata says ``vocab_size`` 2e6 or
200 layers took gigabytes (checker h340), and a wrong ``hidden_act`` failed as ``KeyError:
'bogus'``. Each size the weights fix is compared first, and every refusal names the metadata
key, so nothing is allocated for a state that would not load anyway.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import heirloom

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig

#: ``config key -> (weight, dimension)``: the sizes a BERT checkpoint's tensors fix.
SIZES = {
    "vocab_size": ("embeddings.word_embeddings.weight", 0),
    "hidden_size": ("embeddings.word_embeddings.weight", 1),
    "max_position_embeddings": ("embeddings.position_embeddings.weight", 0),
    "type_vocab_size": ("embeddings.token_type_embeddings.weight", 0),
    "intermediate_size": ("encoder.layer.0.intermediate.dense.weight", 0),
}
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.")
WHERE = "metadata encoder.config"


def bert_config(config: Any, weights: dict[str, torch.Tensor]) -> BertConfig:
    """The ``BertConfig`` of ``config`` (a state's ``encoder.config``), refused naming the key when
    it is no table, cannot configure BERT, or disagrees with the ``weights`` it comes with."""
    from transformers import BertConfig
    from transformers.activations import ACT2FN

    if not isinstance(config, dict):
        raise heirloom.HeirloomError(f"the encoder state's {WHERE} is {type(config).__name__}, not a table")
    for key, (name, dimension) in SIZES.items():
        found, tensor = config.get(key), weights.get(name)
        if tensor is not None and (type(found) is not int or found != tensor.shape[dimension]):
            raise heirloom.HeirloomError(
                f"the encoder state's {WHERE}.{key} is {found!r}, but its weights {name} have {tensor.shape[dimension]}"
            )
    layers = {int(match.group(1)) for name in weights if (match := _LAYER.match(name))}
    if config.get("num_hidden_layers") != len(layers):
        raise heirloom.HeirloomError(
            f"the encoder state's {WHERE}.num_hidden_layers is {config.get('num_hidden_layers')!r}, "
            f"but its weights hold {len(layers)} layers"
        )
    heads = config.get("num_attention_heads")
    if type(heads) is not int or heads < 1 or config["hidden_size"] % heads:
        raise heirloom.HeirloomError(
            f"the encoder state's {WHERE}.num_attention_heads is {heads!r}: it must divide hidden_size "
            f"{config['hidden_size']}"
        )
    if not isinstance(activation := config.get("hidden_act", "gelu"), str) or activation not in ACT2FN:
        raise heirloom.HeirloomError(
            f"the encoder state's {WHERE}.hidden_act is {activation!r}, no activation BERT has"
        )
    try:
        return BertConfig(**config)
    except (TypeError, ValueError) as exc:  # a value BertConfig's arguments refuse
        raise heirloom.HeirloomError(f"the encoder state's {WHERE} cannot configure BERT: {exc}") from None
