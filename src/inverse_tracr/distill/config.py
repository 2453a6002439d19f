"""How to distil: the recipe's settings (no JAX here: the stage's parent process reads them too)."""

from __future__ import annotations

import dataclasses

KINDS = ("compressed", "natural")
INPUTS = ("vocabulary", "random")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """A distillation recipe; `seed` and the teacher make the rest deterministic."""

    kind: str = "compressed"
    compression: float = 2.0  # residual width / student width
    inputs: str = "vocabulary"  # block inputs for the layer-wise loss: "vocabulary" | "random"
    ce_weight: float = 1.0  # 0: layer-wise L2 only
    #: Weight of the attention-pattern loss: KL divergence from the teacher's attention to the
    #: student's (0: none). Unlike the block outputs' L2, it still has a gradient when a
    #: saturated softmax picks the wrong keys.
    attention_weight: float = 1.0
    batch: int = 32
    max_steps: int = 2000
    check_every: int = 50
    learning_rate: float | None = None  # default: 1e-2 compressed (one small matrix), 3e-3 natural
    warmup_steps: int = 50
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    eval_inputs: int = 256
    #: Training runs per student: a rejected run is retried from a fresh initialisation.
    attempts: int = 2
    min_agreement: float = 0.9
    max_layer_loss: float = 0.05
    #: (fraction of max_steps, loss ceiling as a multiple of max_layer_loss): give up past it.
    give_up: tuple[tuple[float, float], ...] = ((0.25, 40.0), (0.5, 8.0))
    #: Give up when the best held-out agreement has not risen by 0.01 in this many steps.
    patience_steps: int = 600
    #: Training scales the student's attention logits, from `anneal_from` up to 1 (the true model)
    #: over this many steps, so a saturated softmax still passes gradient (0: no annealing).
    #: Default: 600 for compressed students; 0 for natural ones, whose free weights set their own
    #: scale (annealed, 4 of 24 passed the gate only at the scale they were trained at).
    anneal_steps: int | None = None
    anneal_from: float = 0.05

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {self.inputs!r}")
        if not self.compression >= 1:
            raise ValueError(f"compression must be at least 1, got {self.compression}")
        if self.attempts < 1 or self.ce_weight < 0 or self.attention_weight < 0:
            raise ValueError(f"need attempts >= 1 and non-negative loss weights, got {self.attempts}, {self.ce_weight}, {self.attention_weight}")
        if self.max_steps < self.check_every or self.check_every < 1:
            raise ValueError(f"need 1 <= check_every <= max_steps, got {self.check_every} and {self.max_steps}")
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", 1e-2 if self.kind == "compressed" else 3e-3)
        if self.anneal_steps is None:
            object.__setattr__(self, "anneal_steps", 600 if self.kind == "compressed" else 0)
        if self.anneal_steps < 0 or not 0 < self.anneal_from <= 1:
            raise ValueError(f"need anneal_steps >= 0 and 0 < anneal_from <= 1, got {self.anneal_steps} and {self.anneal_from}")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(f"max steps ({self.max_steps}) must exceed the warm-up ({self.warmup_steps} steps)")
        # From JSON the pairs come back as lists; the compiled step needs the config hashable.
        object.__setattr__(self, "give_up", tuple(tuple(pair) for pair in self.give_up))

    def width(self, residual_width: int) -> int:
        return max(1, round(residual_width / self.compression))
