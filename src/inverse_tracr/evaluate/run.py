"""The `evaluate` stage: score a trained run on a split of a zoo, write the report to the store.

Decodes every program two ways — teacher-forced (each token predicted from the true ones before
it: the thesis's setting) and autoregressive (the model's own, grammar-constrained greedy
decoding: what `decompile` does) — and also decompiles Tracr's hand-written `lib` programs as an
out-of-distribution check. Writes `report.json`, `report.md` and PNG plots to
`<store>/<zoo>/meta/<run>/eval/<kind>-<split>/`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

from tqdm import tqdm

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.verify import check_inputs
from inverse_tracr.evaluate import metrics, report
from inverse_tracr.meta import checkpoint
from inverse_tracr.meta.data import collate, example
from inverse_tracr.meta.train import load_model, read_history
from inverse_tracr.programs.tracr_lib import tracr_lib_programs
from inverse_tracr.zoo.shards import Reader, shard_urls
from inverse_tracr.zoo.store import Store

DECODINGS = ("teacher_forced", "autoregressive")


class EvaluateError(RuntimeError):
    """Nothing to evaluate (no shards, an empty split)."""


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


def report_location(config: EvalConfig) -> tuple[str, ...]:
    return (config.zoo, "meta", config.run, "eval", f"{config.kind}-{config.split}")


def existing_report(config: EvalConfig) -> dict[str, Any] | None:
    """The report of this evaluation, if one was written for the run's newest checkpoint."""
    store = Store(config.store)
    folder = report_location(config)
    if not store.exists(*folder, "report.json"):
        return None
    report = json.loads(store.read_bytes(*folder, "report.json"))
    newest = checkpoint.newest(store, (config.zoo, "meta", config.run))
    if report.get("config") != json.loads(json.dumps(dataclasses.asdict(config))) or newest is None or report.get("checkpoint") != newest[-1]:
        return None
    return {**report, "location": store.url_of(*folder)}


def evaluate(config: EvalConfig, progress: bool = True) -> dict[str, Any]:
    store = Store(config.store)
    urls = shard_urls(store, config.zoo, config.kind)
    if not urls:
        raise EvaluateError(f"no finished {config.kind} shards in {store.url_of(config.zoo)}")
    samples = list(itertools.islice(Reader(urls, split=None if config.split == "all" else config.split), config.limit))
    if not samples:
        raise EvaluateError(f"no programs of split {config.split!r} in {config.zoo}/{config.kind}")
    model = load_model(config.store, config.zoo, config.run)

    results: dict[str, list[metrics.Scored]] = {d: [] for d in config.decodings}
    bar = tqdm(total=len(samples), desc=f"evaluate {config.kind}/{config.split}", unit="program", disable=not progress)
    for start in range(0, len(samples), config.batch_size):
        chunk = samples[start : start + config.batch_size]
        inputs = [check_inputs(s.program, config.inputs, seed=2) for s in chunk]
        if "teacher_forced" in results:
            examples = [example(s, model.config.max_chunks) for s in chunk]
            tokenised = [(s, e, x) for s, e, x in zip(chunk, examples, inputs) if e is not None]
            predicted = model.teacher_forced(collate([e for _, e, _ in tokenised])) if tokenised else []
            results["teacher_forced"] += [metrics.score(s.key, s.program, p, x) for (s, _, x), p in zip(tokenised, predicted)]
        if "autoregressive" in results:
            predicted = model.generate([s.params for s in chunk], inputs=[(s.program.vocab, s.program.max_seq_len) for s in chunk])
            results["autoregressive"] += [metrics.score(s.key, s.program, p, x) for s, p, x in zip(chunk, predicted, inputs)]
        bar.update(len(chunk))
    bar.close()

    out = {
        "config": dataclasses.asdict(config),
        "checkpoint": checkpoint.newest(store, (config.zoo, "meta", config.run))[-1],
        "programs": len(samples),
        "decodings": {d: metrics.summarise(r) for d, r in results.items()},
        "history": read_history(store, config.zoo, config.run),
        "lib": _lib(config, model) if config.lib else [],
    }
    folder = report_location(config)
    store.write_bytes(json.dumps(out, indent=1).encode(), *folder, "report.json")
    store.write_bytes(report.markdown(out).encode(), *folder, "report.md")
    for name, png in report.plots(out).items():
        store.write_bytes(png, *folder, name)
    out["location"] = store.url_of(*folder)
    return out


def _lib(config: EvalConfig, model) -> list[dict[str, Any]]:
    programs = tracr_lib_programs()
    predicted = model.generate([compile_program(p).params for p in programs.values()],
                               inputs=[(p.vocab, p.max_seq_len) for p in programs.values()])
    rows = []
    for (name, program), ids in zip(programs.items(), predicted):
        scored = metrics.score(name, program, ids, check_inputs(program, config.inputs, seed=2))
        source = scored.predicted.source() if scored.predicted is not None else "invalid (does not parse)"
        rows.append({"name": name, "lines": len(program.lines), "token_accuracy": scored.accuracy,
                     "exact": scored.exact, "functional": scored.functional, "predicted": source})
    return rows
