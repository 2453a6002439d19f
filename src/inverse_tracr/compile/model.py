"""`CompiledModel`: a compiled transformer as plain arrays plus what it takes to run it.

Tracr keeps the embedding/unembedding conventions in Python objects (encoders, vector spaces);
`Layout` records them as JSON so a stored model can be run — and checked — without Tracr.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

BOS = "compiler_bos"
PAD = "compiler_pad"
READOUT = "readout/w"  # a distilled model's map from its residual to the outputs
# Tracr's parameter paths (haiku's module names): the embeddings, then per layer these modules,
# each with a `w` and a `b`, under `transformer/layer_<i>/`.
TOKEN_EMBED, POS_EMBED = "token_embed/embeddings", "pos_embed/embeddings"
LAYER_MODULES = ("attn/query", "attn/key", "attn/value", "attn/linear", "mlp/linear_1", "mlp/linear_2")
LAYER_PARAM = re.compile(r"^transformer/layer_(\d+)/(attn|mlp)/(\w+)/([wb])$")


def layer_param(layer: int, path: str) -> str:
    """A path under layer `layer`: layer_param(0, "attn/query/w") is "transformer/layer_0/attn/query/w"."""
    return f"transformer/layer_{layer}/{path}"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Architecture and I/O conventions of a compiled model (stored in meta.json)."""

    num_layers: int
    num_heads: int
    key_size: int
    mlp_hidden_size: int
    residual_labels: tuple[str, ...]
    input_tokens: tuple[Any, ...]  # token of each embedding row, BOS and PAD included
    output_dims: tuple[int, ...]  # residual dimensions the unembedding reads (or the read-out's columns)
    output_values: tuple[Any, ...] | None  # categorical: value of each output dim; numerical: None
    #: Distilled models have no named residual dimensions: a `readout/w` tensor [D, O] maps the
    #: final residual to the outputs, and output_dims are its columns, 0..O-1.
    readout: bool = False
    #: Compiled with `causal=True`: every attention query sees keys at positions ≤ its own only.
    #: The weights are the same as without; only this flag says the model computes another function.
    causal: bool = False

    @property
    def residual_width(self) -> int:
        return len(self.residual_labels)

    @property
    def blocks(self) -> list[str]:
        """Block types in execution order (the thesis's block-type string, as a list)."""
        return ["attn", "mlp"] * self.num_layers

    def to_json(self) -> dict[str, Any]:
        """`causal` only when set: a non-causal layout serialises as it did before the flag."""
        data = {**dataclasses.asdict(self), "residual_width": self.residual_width, "blocks": self.blocks}
        if not self.causal:
            del data["causal"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Layout":
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            values = {k: data[k] for k in fields if k not in ("readout", "causal")}
            values["readout"] = bool(data.get("readout", False))  # absent in standard samples
            values["causal"] = data.get("causal", False)  # absent in non-causal models
            if not isinstance(values["causal"], bool):
                raise TypeError(f"causal must be true or false, got {values['causal']!r}")
            values["residual_labels"] = tuple(values["residual_labels"])
            values["input_tokens"] = tuple(values["input_tokens"])
            values["output_dims"] = tuple(int(d) for d in values["output_dims"])
            if values["output_values"] is not None:
                values["output_values"] = tuple(values["output_values"])
            layout = cls(**values)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed model layout: {error!r}") from None
        if layout.readout and layout.output_dims != tuple(range(len(layout.output_dims))):
            raise ValueError("malformed model layout: a read-out's output dims must be 0..O-1")
        if not layout.readout and not all(0 <= d < layout.residual_width for d in layout.output_dims):
            raise ValueError("malformed model layout: output dims outside the residual stream")
        return layout


@dataclasses.dataclass
class CompiledModel:
    """Parameters by haiku path (`transformer/layer_0/attn/query/w`) and their layout."""

    params: dict[str, np.ndarray]
    layout: Layout

    @classmethod
    def from_tracr(cls, assembled, output_label: str) -> "CompiledModel":
        """From Tracr's `AssembledTransformerModel`; `output_label` is the output SOp's label."""
        config = assembled.model_config
        params = {
            f"{module}/{name}": np.asarray(value, dtype=np.float32)
            for module, group in assembled.params.items()
            for name, value in group.items()
        }
        labels = tuple(assembled.residual_labels)
        output_map = getattr(assembled.output_encoder, "encoding_map", None)
        if output_map is not None:  # categorical: one residual direction per output value
            output_values = tuple(sorted(output_map, key=output_map.get))
            output_dims = tuple(labels.index(f"{output_label}:{value}") for value in output_values)
        else:
            output_values, output_dims = None, (labels.index(output_label),)
        input_map = assembled.input_encoder.encoding_map
        layout = Layout(
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            key_size=config.key_size,
            mlp_hidden_size=config.mlp_hidden_size,
            residual_labels=labels,
            input_tokens=tuple(sorted(input_map, key=input_map.get)),
            output_dims=output_dims,
            output_values=output_values,
            causal=bool(config.causal),
        )
        return cls(params, layout)
