"""What a shard-writing stage (generate, distill) did, as the lines it prints at the end."""

from __future__ import annotations

import collections
import dataclasses


@dataclasses.dataclass(kw_only=True)
class StageSummary:
    """Shards written and skipped, time, and why candidates were rejected; a stage adds its own
    counts and says what it made (`made`)."""

    shards_written: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0
    rejections: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def shards(self) -> str:
        """How the stage's shards are named in its lines."""
        return "shard(s)"

    def made(self) -> str:
        """What the written shards hold, and how fast they were made."""
        raise NotImplementedError

    def lines(self) -> list[str]:
        if not self.shards_written:
            return [f"all {self.shards_skipped} {self.shards} already finished: nothing to do"]
        out = [f"wrote {self.shards_written} {self.shards}, skipped {self.shards_skipped} finished; {self.made()}"]
        if self.rejections:
            total = sum(self.rejections.values())
            out.append("rejected: " + ", ".join(f"{reason} {n} ({n / total:.0%})" for reason, n in self.rejections.most_common()))
        return out
