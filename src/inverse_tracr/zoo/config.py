"""What a zoo's standard shards depend on: its settings, light to import so that the CLI reads its defaults here."""

from __future__ import annotations

import dataclasses

from inverse_tracr.programs.sampler import SamplerConfig


@dataclasses.dataclass(frozen=True)
class ZooConfig:
    """Everything a standard shard's content depends on (the number of programs is not: it only
    says how many shards there are)."""

    shard_size: int = 100
    min_ops: int = 4
    max_ops: int = 8
    vocab_size: int = 5
    max_seq_len: int = 5
    seed: int = 0
    #: Random inputs checked when the input space is too large to check every input.
    verify_inputs: int = 1024
    #: Share of Map, SequenceMap and Select lines with a random table instead of a library function.
    random_tables: float = 0.1

    def __post_init__(self):
        if not 1 <= self.shard_size <= 100_000:
            raise ValueError(f"shard size must be 1..100000, got {self.shard_size}")
        if not 1 <= self.verify_inputs <= 10_000:
            raise ValueError(f"verify inputs must be 1..10000, got {self.verify_inputs}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        self.sampler  # noqa: B018 - building it validates the program settings

    @property
    def sampler(self) -> SamplerConfig:
        return SamplerConfig(self.min_ops, self.max_ops, self.vocab_size, self.max_seq_len, self.random_tables)

    def shards_for(self, programs: int) -> int:
        """Shards needed for at least `programs` programs (whole shards only)."""
        return -(-programs // self.shard_size)
