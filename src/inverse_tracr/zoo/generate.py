"""The `generate` stage: a standard zoo, sample → compile → verify → write, shard by shard.

Candidates (shard i, candidate j) run on guarded workers in any order, but a shard always takes
the *first* `shard_size` distinct accepted candidates in j order, so its bytes do not depend on
the number of workers or on timing. The parent only schedules and writes; it never imports JAX.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import statistics
import time
from typing import Any, Iterable

from inverse_tracr.compile.workers import MEMORY_LIMIT_MB, GuardedPool
from inverse_tracr.errors import InverseTracrError
from inverse_tracr.progress import progress_bar
from inverse_tracr.zoo.config import ZooConfig
from inverse_tracr.zoo.manifest import open_zoo
from inverse_tracr.zoo.shards import finished_shards, write_shard
from inverse_tracr.zoo.store import Store
from inverse_tracr.zoo.summary import StageSummary

JOB = "inverse_tracr.zoo.candidates:build_candidate"
KIND = "standard"
#: A shard gives up (GenerationError) after this many candidates per program it needs.
MAX_CANDIDATES_PER_PROGRAM = 20


class GenerationError(InverseTracrError, RuntimeError):
    """A shard could not be filled (acceptance far too low for these settings)."""


@dataclasses.dataclass(kw_only=True)
class Summary(StageSummary):
    """What a generate run did; `rejections` counts reasons over every candidate it ran."""

    programs: int = 0
    candidates: int = 0
    startup_seconds: float = 0.0  # starting the workers (imports): paid once per run

    @property
    def programs_per_second(self) -> float:
        return self.programs / self.seconds if self.seconds else 0.0

    @property
    def steady_programs_per_second(self) -> float:
        """Throughput once the workers are up (what a long run approaches)."""
        working = self.seconds - self.startup_seconds
        return self.programs / working if working > 0 else 0.0

    def made(self) -> str:
        return (f"{self.programs} verified programs from {self.candidates} candidates in {self.seconds:.1f} s "
                f"({self.programs_per_second:.2f} programs/s; {self.steady_programs_per_second:.2f}/s after "
                f"{self.startup_seconds:.1f} s of worker start-up)")


@dataclasses.dataclass
class _Shard:
    """Candidates of one shard, as they come back."""

    index: int
    results: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    next_candidate: int = 0
    inflight: int = 0
    accepted: int = 0

    def complete(self, size: int) -> tuple[list[dict[str, Any]], int] | None:
        """(The first `size` distinct accepted candidates, candidates used), once known."""
        chosen, ids = [], set()
        for j in range(len(self.results)):
            result = self.results.get(j)
            if result is None:
                return None  # an earlier candidate is still running
            if "files" in result and result["id"] not in ids:
                ids.add(result["id"])
                chosen.append(result)
                if len(chosen) == size:
                    return chosen, j + 1
        return None


def generate(
    store_url: str,
    zoo: str,
    config: ZooConfig,
    programs: int,
    shards: Iterable[int] | None = None,
    workers: int = 1,
    memory_limit_mb: int = MEMORY_LIMIT_MB,
    progress: bool = True,
) -> Summary:
    """Write the standard shards `shards` (default: enough for `programs`), skipping finished ones."""
    started = time.monotonic()
    store = Store(store_url)
    open_zoo(store, zoo, config)
    wanted = list(range(config.shards_for(programs)) if shards is None else shards)
    done = finished_shards(store, zoo, KIND)
    todo = [i for i in wanted if i not in done]
    summary = Summary(shards_skipped=len(wanted) - len(todo))
    if not todo:
        return summary

    size = config.shard_size
    states = {i: _Shard(i) for i in todo}
    payload = {"sampler": dataclasses.asdict(config.sampler), "seed": config.seed, "verify_inputs": config.verify_inputs}
    seen = accepted_total = 0

    def next_task():
        # Fill the lowest unfinished shard first, speculating by the acceptance rate seen so far.
        rate = max(accepted_total / seen, 0.05) if seen >= 10 else 0.5
        shard = next((s for s in states.values() if s.inflight < math.ceil((size - s.accepted) / rate)), None)
        shard = shard or next(iter(states.values()))
        if shard.next_candidate >= MAX_CANDIDATES_PER_PROGRAM * size:
            reasons = collections.Counter(r.get("reason") for r in shard.results.values() if "reason" in r)
            raise GenerationError(
                f"shard {shard.index}: only {shard.accepted} of {size} programs accepted after "
                f"{shard.next_candidate} candidates (rejections: {dict(reasons)}); try other program settings"
            )
        task = ((shard.index, shard.next_candidate), config.max_ops, {**payload, "shard": shard.index, "candidate": shard.next_candidate})
        shard.next_candidate += 1
        shard.inflight += 1
        return task

    with GuardedPool(JOB, workers, memory_limit_mb) as pool, progress_bar(
        total=len(todo) * size, unit="program", desc=f"generate {zoo}", enabled=progress
    ) as bar:
        summary.startup_seconds = time.monotonic() - started
        while states:
            while pool.idle:
                pool.submit(*next_task())
            for outcome in pool.poll():
                index, candidate = outcome.key
                summary.candidates += 1
                result = outcome.result if outcome.reason is None else {"reason": outcome.reason}
                seen += 1
                if "reason" in result:
                    summary.rejections[result["reason"]] += 1
                else:
                    accepted_total += 1
                shard = states.get(index)
                if shard is None:
                    continue  # speculative candidate of a shard already written
                shard.inflight -= 1
                shard.results[candidate] = result
                if "files" in result:
                    shard.accepted += 1
                    if shard.accepted <= size:
                        bar.update(1)
                completed = shard.complete(size)
                if completed is not None:
                    _write(store, zoo, index, *completed, shard.results)
                    summary.shards_written += 1
                    summary.programs += size
                    del states[index]
    summary.seconds = time.monotonic() - started
    return summary


def _write(store: Store, zoo: str, index: int, chosen: list[dict], used: int, results: dict[int, dict]) -> None:
    considered = [results[j] for j in range(used)]
    seconds = sorted(r["compile_seconds"] for r in chosen)
    stats = {
        "candidates": used,
        "rejections": dict(collections.Counter(r["reason"] for r in considered if "reason" in r)),
        "duplicates": sum("files" in r for r in considered) - len(chosen),
        "ops": dict(sorted(collections.Counter(str(r["ops"]) for r in chosen).items())),
        "compile_seconds": {
            "mean": statistics.fmean(seconds),
            "p50": seconds[len(seconds) // 2],
            "p90": seconds[int(0.9 * (len(seconds) - 1))],
            "max": seconds[-1],
        },
    }
    write_shard(store, zoo, KIND, index, [r["files"] for r in chosen], stats)
