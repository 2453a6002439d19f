"""The `distill` stage: standard shard i → `<kind>/shard-i.tar`, a student of every model in it.

Same rules as `generate`: a shard is a pure function of the standard shard, the distillation config
and the seed (each student's seed derives from the seed and its program id, never from what a
worker did before); its marker is written last, so a finished shard is skipped and an interrupted
one redone with the same bytes. Run times vary, so they live in the marker, never in the tar.

A student is written only if it passes the gates *and*, once folded and stripped of padding, the
stored model still agrees with the program (`compile.forward` in NumPy, no JAX) on the gate's
held-out inputs at least as often as the gate demands: what the meta-model reads is what was
checked. (Not a second draw of inputs: at a 90 % gate that only re-rolls the students that pass
narrowly — measured, 1 to 3 in 24 — and says nothing more about the stored weights.)
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import statistics
import time
from typing import Any, Iterable

from inverse_tracr.compile import forward
from inverse_tracr.compile.model import CompiledModel, Layout
from inverse_tracr.compile.verify import STUDENT_ATOL
from inverse_tracr.compile.workers import MEMORY_LIMIT_MB, AdaptiveTimeout, GuardedPool
from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.errors import InverseTracrError
from inverse_tracr.progress import progress_bar
from inverse_tracr.zoo import sample as sample_format
from inverse_tracr.zoo.manifest import differences, read_config, versions
from inverse_tracr.zoo.shards import Reader, finished_shards, part_of, shard_name, write_shard
from inverse_tracr.zoo.store import Store
from inverse_tracr.zoo.summary import StageSummary

JOB = "inverse_tracr.distill.stage:distill_sample"
CONFIG_FILE = "distill.json"
#: Distilling one model takes seconds; only a hung worker gets near this.
TIMEOUT = AdaptiveTimeout(floor=900.0)


class DistillError(InverseTracrError, ValueError):
    """The stage cannot run as asked (no standard shards, a different recorded config, …)."""


def student_layout(teacher: Layout, width: int) -> Layout:
    """A student's layout: the teacher's sizes and I/O, a residual of `width` anonymous dims."""
    return dataclasses.replace(
        teacher,
        residual_labels=tuple(f"student:{i}" for i in range(width)),
        output_dims=tuple(range(len(teacher.output_dims))),
        readout=True,
    )


def student_seed(seed: int, program_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"inverse-tracr:distill:{seed}:{program_id}".encode()).digest()[:4], "little")


def distill_sample(payload: dict[str, Any]) -> dict[str, Any]:
    """In a worker: {'files', 'id', 'seconds', 'steps'} for an accepted student, else {'reason', 'seconds'}."""
    from inverse_tracr.distill.recipe import distill, held_out_inputs, use_compilation_cache  # JAX and Tracr: workers only
    from inverse_tracr.programs import Program

    started = time.perf_counter()
    use_compilation_cache()
    config = DistillConfig(**payload["config"])
    program = Program.from_json(payload["program"])
    teacher_meta = payload["meta"]
    layout = Layout.from_json(teacher_meta["model"])
    seed = student_seed(payload["seed"], program.id)
    result = distill(program, payload["params"], layout, config, seed)
    if not result.accepted:
        return {"reason": result.reason, "seconds": time.perf_counter() - started}
    model = CompiledModel(result.params, student_layout(layout, result.figures["width"]))
    verification = check_stored(model, program, held_out_inputs(program, config, seed))
    if verification["accuracy"] < config.min_agreement:
        return {"reason": "stored_model_disagrees", "seconds": time.perf_counter() - started}
    figures = {k: v for k, v in result.figures.items() if k != "seconds"}
    meta = {
        "format": sample_format.SAMPLE_FORMAT,
        "kind": config.kind,
        "program_id": program.id,
        "teacher_id": payload["teacher_id"],
        "seed": seed,
        "shard": payload["shard"],
        "model": model.layout.to_json(),
        "distillation": {**figures, "config": payload["config"]},
        "verification": verification,
        "versions": versions(),
    }
    return {
        "files": sample_format.encode(program, model.params, meta),
        "id": program.id,
        "steps": figures["steps"],
        "seconds": time.perf_counter() - started,
    }


def check_stored(model: CompiledModel, program, inputs: list) -> dict[str, Any]:
    """How often the stored student's decoded outputs are the program's, where it defines one
    (numerical outputs: within the gate's tolerance)."""
    positions = agreeing = 0
    for got_row, xs in zip(forward.run(model, inputs), inputs):
        for got, want in zip(got_row, program.evaluate(xs)):
            if want is not None:
                positions += 1
                agreeing += abs(got - want) <= STUDENT_ATOL if model.layout.output_values is None else got == want
    return {"inputs": len(inputs), "positions": positions, "agreeing": agreeing, "accuracy": agreeing / max(positions, 1)}


@dataclasses.dataclass(kw_only=True)
class Summary(StageSummary):
    """What a distill run did."""

    kind: str
    teachers: int = 0
    accepted: int = 0

    @property
    def shards(self) -> str:
        return f"{self.kind} shard(s)"

    @property
    def seconds_per_accepted(self) -> float:
        return self.seconds / self.accepted if self.accepted else float("inf")

    def made(self) -> str:
        rate = self.accepted / self.teachers if self.teachers else 0.0
        return (f"{self.accepted} of {self.teachers} models accepted ({rate:.0%}) in {self.seconds:.1f} s "
                f"({self.seconds_per_accepted:.2f} s per accepted model)")


def _open(store: Store, zoo: str, kind: str, config: dict[str, Any]) -> None:
    """Record the distillation config beside the shards, or check it is the one recorded."""
    if store.exists(zoo, kind, CONFIG_FILE):
        try:
            recorded = json.loads(store.read_bytes(zoo, kind, CONFIG_FILE)).get("config")
            if not isinstance(recorded, dict):
                raise ValueError("no config in it")
        except (ValueError, AttributeError) as error:
            raise DistillError(f"unreadable {kind}/{CONFIG_FILE} of zoo {zoo!r}: {error}") from None
        if recorded != config:
            raise DistillError(
                f"the {kind} shards of zoo {zoo!r} were distilled with {', '.join(differences(recorded, config))}; "
                "use the same settings to continue, or another --zoo"
            )
    else:
        store.write_bytes(sample_format.dumps({"config": config, "versions": versions()}), zoo, kind, CONFIG_FILE)


def distill_zoo(
    store_url: str,
    zoo: str,
    config: DistillConfig,
    seed: int = 0,
    shards: Iterable[int] | None = None,
    part: tuple[int, int] | None = None,
    workers: int = 1,
    memory_limit_mb: int = MEMORY_LIMIT_MB,
    progress: bool = True,
) -> Summary:
    """Distil the standard shards `shards` (default: every finished one) — or the K-th of N slices
    of them, `part=(K, N)` — into `config.kind` shards."""
    started = time.monotonic()
    store = Store(store_url)
    read_config(store, zoo)  # the standard zoo must exist
    kind = config.kind
    recorded = json.loads(sample_format.dumps({**dataclasses.asdict(config), "seed": seed}))  # as JSON reads it back
    _open(store, zoo, kind, recorded)
    standard = finished_shards(store, zoo, "standard")
    wanted = sorted(standard) if shards is None else list(shards)
    missing = [i for i in wanted if i not in standard]
    if missing:
        raise DistillError(f"standard shard(s) {missing[:5]} of zoo {zoo!r} are not finished: generate them first")
    if not wanted:
        raise DistillError(f"zoo {zoo!r} has no finished standard shards: generate some first")
    if part is not None:
        wanted = part_of(wanted, part)  # may be empty
    done = finished_shards(store, zoo, kind)
    todo = [i for i in wanted if i not in done]
    summary = Summary(kind=kind, shards_skipped=len(wanted) - len(todo))
    if not todo:
        return summary

    payload = {"config": {k: v for k, v in recorded.items() if k != "seed"}, "seed": seed}
    with GuardedPool(JOB, workers, memory_limit_mb, timeout=TIMEOUT) as pool, progress_bar(
        unit="model", desc=f"distill {kind}", enabled=progress
    ) as bar:
        for index in todo:
            reader = Reader(store.url_of(zoo, "standard", f"{shard_name(index)}.tar"), unique=False)
            teachers = list(reader)
            if reader.errors:
                raise DistillError(f"standard shard {index} is unreadable: {reader.errors[0]}")
            bar.total = (bar.total or 0) + len(teachers)
            results = _run_shard(pool, index, teachers, payload, bar)
            _write(store, zoo, kind, index, results)
            summary.shards_written += 1
            summary.teachers += len(results)
            summary.accepted += sum("files" in r for r in results)
            summary.rejections.update(r["reason"] for r in results if "reason" in r)
    summary.seconds = time.monotonic() - started
    return summary


def _run_shard(pool: GuardedPool, index: int, teachers: list, payload: dict[str, Any], bar) -> list[dict[str, Any]]:
    """Every teacher of one shard through the workers; results in shard order."""
    results: dict[int, dict[str, Any]] = {}
    queue = collections.deque(enumerate(teachers))
    while len(results) < len(teachers):
        while pool.idle and queue:
            position, teacher = queue.popleft()
            task = {
                **payload,
                "program": teacher.program.to_json(),
                "params": teacher.params,
                "meta": teacher.meta,
                "teacher_id": hashlib.sha256(sample_format.params_to_npz(teacher.params)).hexdigest()[:16],
                "shard": index,
            }
            pool.submit(position, 0, task)
        for outcome in pool.poll():
            results[outcome.key] = outcome.result if outcome.reason is None else {"reason": outcome.reason, "seconds": outcome.seconds}
            bar.update(1)
    return [results[i] for i in range(len(teachers))]


def _write(store: Store, zoo: str, kind: str, index: int, results: list[dict[str, Any]]) -> None:
    accepted = [r for r in results if "files" in r]
    seconds = sorted(r["seconds"] for r in results)
    stats = {
        "teachers": len(results),
        "accepted": len(accepted),
        "rejections": dict(collections.Counter(r["reason"] for r in results if "reason" in r)),
        "steps": {"mean": statistics.fmean(r["steps"] for r in accepted)} if accepted else {},
        "seconds": {"total": sum(seconds), "p50": seconds[len(seconds) // 2], "max": seconds[-1]} if seconds else {},
    }
    write_shard(store, zoo, kind, index, [r["files"] for r in accepted], stats)
