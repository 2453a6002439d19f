"""The meta-model's settings: the model, its training, the checked search.

Kept apart from the modules that use them, and free of torch, so that the CLI reads its defaults
from these classes (one place for each) and `--help` stays instant.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from inverse_tracr.meta import augment as augmentation
from inverse_tracr.meta import vocab, weights
from inverse_tracr.meta.presets import PRESETS


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    preset: str = "tiny"
    decoder: Literal["autoregressive", "slots"] = "autoregressive"
    max_chunks: int = 512
    dropout: float = 0.0
    input_noise: float = 0.0  # Gaussian noise on (normalised) weights, × their std, in training
    input_dropout: float = 0.0  # chance of zeroing a weight chunk in training
    targets: str = vocab.LAYOUT  # the program-token layout the model writes
    attention: Literal["causal", "prefix"] = "prefix"  # over the weight tokens (see `meta.model`)
    weight_tokens: Literal["chunks", "neurons", "offsets"] = weights.DEFAULT_FORM  # the input's form (see `weights`)
    entries: bool = True  # a program position embeds the operand values of the table entry it predicts (see `model`)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        if self.decoder not in ("autoregressive", "slots"):
            raise ValueError(f"unknown decoder {self.decoder!r}")
        if self.attention not in ("causal", "prefix"):
            raise ValueError(f"unknown attention {self.attention!r} (causal or prefix)")
        if self.weight_tokens not in weights.FORMS:
            raise ValueError(f"unknown weight tokens {self.weight_tokens!r} (choose from {', '.join(weights.FORMS)})")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    store: str
    zoo: str
    run: str = "meta"
    kinds: tuple[str, ...] = ("standard",)
    split: str | None = "train"
    model: MetaConfig = MetaConfig()
    steps: int = 1000
    batch_size: int = 32
    lr: float | None = None  # None: the preset's (meta.presets)
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    grad_accum: int = 1
    seed: int = 0
    shuffle_buffer: int = 1000
    size_pool: int = 16  # batches' worth of examples sorted by length, for less padding (`data.by_size`); 1: random batches
    loader_workers: int = 0
    cache_mb: int = 1024  # decoded examples kept in memory per loader process, for later epochs (`data.Cache`)
    #: Exact symmetries drawn for every example seen (`meta.augment`): hidden, heads, residual, rotation.
    #: None: `rotation` where the weight tokens can turn (neurons, offsets), none for chunks. It turns
    #: distilled students only, which it helped (held out, +3 points of their tokens); standard
    #: models stay as they are.
    augment: tuple[str, ...] | None = None
    #: Each distilled kind's shards are read this many times for each time the standard ones are:
    #: students are few (distillation costs seconds each, compilation milliseconds).
    oversample: int = 1
    init_from: str | None = None  # a run of the same zoo whose newest weights a new run starts from (transfer, thesis §8.5)
    checkpoint_every: int = 200
    log_every: int = 10
    mixed_precision: str = "no"  # "bf16" on GPUs

    def __post_init__(self):
        if self.size_pool < 1:
            raise ValueError(f"size_pool must be at least 1, got {self.size_pool}")
        if self.oversample < 1:
            raise ValueError(f"oversample must be at least 1, got {self.oversample}")
        if self.cache_mb < 0:
            raise ValueError(f"cache_mb must be at least 0, got {self.cache_mb}")
        if self.augment is None:
            object.__setattr__(self, "augment", () if self.model.weight_tokens == "chunks" else ("rotation",))
        augmentation.check(self.augment, self.model.weight_tokens)
        if self.lr is None:
            object.__setattr__(self, "lr", PRESETS[self.model.preset].lr)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "kinds": list(self.kinds), "augment": list(self.augment)}

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        # Runs recorded before a setting existed used what is now its other choice: weight chunks,
        # random batches, no entry embedding.
        return cls(**{"size_pool": 1, **data, "kinds": tuple(data["kinds"]), "augment": tuple(data.get("augment", ())),
                      "model": MetaConfig(**{"weight_tokens": "chunks", "entries": False, **data["model"]})})


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    beam: int = 8
    samples: int = 0
    temperature: float = 1.0
    # Rounds climb (`decompile`): measured on 300 held-out programs (20,000-program, 12,000-step
    # tiny run; 2 s each), beam 4 and 1 round verified 48 %, 8 rounds 55 %, beam 8, 8 rounds, 6 positions 57 %.
    repair_rounds: int = 8
    repair_positions: int = 6
    fit: bool = True  # each round also fits the best candidate's tables to the model (`compile.fit`)
    budget_seconds: float = 10.0
