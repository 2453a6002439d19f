"""Named meta-model sizes, each with the peak learning rate that suits it.

Torch-free, so that the CLI's `--help` can list them. The learning rate is part of the preset
because the size decides it more than anything else. On the CPU benchmark (20,000 programs of 4–6
ops, batch 32, 600 steps; validation token accuracy, teacher-forced) `tiny` reached 71 % at 1e-3,
77 % at 3e-3, 78 % at 6e-3, 79 % at 1e-2 and 2e-2 — and 85 % at 6e-3 or 1e-2 over 1,500 steps,
where 1e-3 plateaued at 78.5 %; `small` reached 79 % at 5e-4, 81 % at 2e-3 and 73 % at 5e-3. The
GPT-2 sizes take the rates GPT-3's authors used at those sizes (Brown et al. 2020, table 2.1).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    n_embd: int
    n_layer: int
    n_head: int
    lr: float  # peak learning rate at batch 32 per process

    def gpt2(self) -> dict[str, int]:
        """The GPT2Config fields of this size."""
        return {"n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head}


#: `tiny` for tests on a CPU … the thesis's GPT-2 medium/large for A100s.
PRESETS = {
    "tiny": Preset(n_embd=64, n_layer=2, n_head=2, lr=6e-3),
    "small": Preset(n_embd=256, n_layer=4, n_head=4, lr=2e-3),
    "base": Preset(n_embd=768, n_layer=12, n_head=12, lr=6e-4),
    "medium": Preset(n_embd=1024, n_layer=24, n_head=16, lr=3e-4),
    "large": Preset(n_embd=1280, n_layer=36, n_head=20, lr=2.5e-4),
}
