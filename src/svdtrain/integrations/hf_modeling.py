"""Modeling code of a compact svdtrain model, written into its folder by svdtrain's
save_compact_pretrained: the folder loads with transformers alone,

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

(or the Auto class of the original model). The model is the original transformers class
with some layers replaced by thin pairs of plain torch layers; ``svdtrain_compact.modules``
in config.json describes each replacement. Needs only torch and transformers: never svdtrain.
"""

import re

from torch import nn
from transformers import GPT2Config as BaseConfig, GPT2LMHeadModel as BaseModel  # the original classes

LAYERS = {"Linear": nn.Linear, "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d}


class CompactConfig(BaseConfig):
    model_type = "svdtrain_compact"


class CompactModel(BaseModel):
    config_class = CompactConfig

    def __init__(self, config):
        super().__init__(config)
        compact = config.svdtrain_compact
        for fqn, layers in compact["modules"].items():
            parent, _, child = fqn.rpartition(".")
            pair = nn.Sequential(*(LAYERS[layer["class"]](**layer["args"]) for layer in layers))
            try:
                setattr(self.get_submodule(parent), child, pair)
            except AttributeError:
                raise edited(f"builds no {fqn!r}, which the folder saved") from None
        # The weights file holds a 0-size tensor under each replaced layer's dense name, so that
        # loading it into the original class fails on a size mismatch instead of silently
        # initializing those layers afresh; here they are expected and ignored.
        guards = {"^" + re.escape(name) + "$" for name in compact["guards"]}
        self._keys_to_ignore_on_load_unexpected = set(self._keys_to_ignore_on_load_unexpected or ()) | guards
        if "weights" in compact:  # folders saved before the list of weights load as they did
            check_saved_weights(self, compact["weights"])


def check_saved_weights(model, saved):
    """Refuse a model whose weights are not exactly those the folder saved ({name: shape}): a
    config.json edited after the save would otherwise load fresh layers, or drop saved ones."""
    built = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    problem = next((f"builds {name!r}, which the folder's weights lack" for name in built if name not in saved), None)
    problem = problem or next((f"builds {name!r} of shape {shape}, saved as {saved[name]}"
                               for name, shape in built.items() if saved[name] != shape), None)  # fmt: skip
    problem = problem or next((f"builds no {name!r}, which the folder saved" for name in saved if name not in built),
                              None)  # fmt: skip
    if problem:
        raise edited(problem)


def edited(problem):
    return ValueError(f"config.json {problem}: it was changed after the save (svdtrain_compact lists what was saved)")
