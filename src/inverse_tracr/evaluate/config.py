"""How to evaluate a run: its settings, free of torch so that the CLI reads its defaults here."""

from __future__ import annotations

import dataclasses

from inverse_tracr.meta.config import SearchConfig

DECODINGS = ("teacher_forced", "autoregressive")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    store: str
    zoo: str
    run: str = "meta"
    kind: str = "standard"
    split: str = "val"
    limit: int | None = None  # programs at most
    decodings: tuple[str, ...] = DECODINGS
    inputs: int = 1024  # random inputs for functional equivalence, where there are too many to check all
    batch_size: int = 32
    lib: bool = True
    #: Shards to evaluate on instead of the run's own zoo (another seed, longer programs, …): a URL
    #: pattern or a zoo folder `<store>/<zoo>` (its `kind` shards); None: the run's zoo.
    data: str | None = None
    #: The meta-model's checked search (`meta.decompile`); beam 0 leaves it out.
    search: SearchConfig = SearchConfig(budget_seconds=2.0)  # issue 13's budget per program
    reader: bool = True  # also report the exact reader (kept apart from the meta-model's figures)
