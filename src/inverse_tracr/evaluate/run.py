"""The `evaluate` stage: score a trained run on a split of a zoo, write the report to the store.

Decodes every program two ways — teacher-forced (each token predicted from the true ones before
it: the thesis's setting) and autoregressive (the model's own, grammar-constrained greedy
decoding: what `decompile` does) — and also decompiles Tracr's hand-written `lib` programs as an
out-of-distribution check. Writes `report.json`, `report.md` and PNG plots to
`<store>/<zoo>/meta/<run>/eval/<kind>-<split>/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from typing import Any

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.verify import check_inputs
from inverse_tracr.errors import InverseTracrError
from inverse_tracr.evaluate import metrics, report
from inverse_tracr.evaluate.config import EvalConfig
from inverse_tracr.meta import checkpoint
from inverse_tracr.meta.data import collate, example
from inverse_tracr.meta.decompile import decompile, model_from_sample
from inverse_tracr.meta.train import load_model, read_history
from inverse_tracr.programs.tracr_lib import tracr_lib_programs
from inverse_tracr.progress import progress_bar
from inverse_tracr.zoo.shards import Reader, expand, shard_urls
from inverse_tracr.zoo.store import Store

class EvaluateError(InverseTracrError, RuntimeError):
    """Nothing to evaluate (no shards, an empty split)."""


def report_location(config: EvalConfig) -> tuple[str, ...]:
    """Where a report goes: one folder per kind and split, or per other data (a zoo folder's kinds apart)."""
    if config.data is None:
        name = f"{config.kind}-{config.split}"
    else:
        kind = "" if _is_shards(config.data) else f"-{config.kind}"
        name = f"data-{hashlib.sha256(config.data.encode()).hexdigest()[:8]}{kind}-{config.split}"
    return (config.zoo, "meta", config.run, "eval", name)


def _is_shards(data: str) -> bool:
    """`--data` names shards (a URL or pattern), not a zoo folder whose `kind` is read."""
    return data.endswith(".tar") or "{" in data


def _urls(store: Store, config: EvalConfig) -> list[str]:
    if config.data is None:
        return shard_urls(store, config.zoo, config.kind)
    if _is_shards(config.data):
        return expand(config.data)
    other = Store(config.data.rsplit("/", 1)[0] if "/" in config.data.rstrip("/") else ".")
    return shard_urls(other, config.data.rstrip("/").rsplit("/", 1)[-1], config.kind)


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


def load_samples(config: EvalConfig) -> list:
    """The samples an evaluation scores (at most `config.limit`); EvaluateError if there are none."""
    urls = _urls(Store(config.store), config)
    where = config.data or f"{config.zoo}/{config.kind}"
    if not urls:
        raise EvaluateError(f"no finished shards in {where}")
    samples = list(itertools.islice(Reader(urls, split=None if config.split == "all" else config.split), config.limit))
    if not samples:
        raise EvaluateError(f"no programs of split {config.split!r} in {where}")
    return samples


def evaluate(config: EvalConfig, progress: bool = True) -> dict[str, Any]:
    store = Store(config.store)
    samples = load_samples(config)
    model = load_model(config.store, config.zoo, config.run)
    results = decodings(model, samples, config, progress)
    greedy = {r.key: r for r in results.get("autoregressive", [])}
    predictions = []
    with progress_bar(total=len(samples), desc="search", unit="program", enabled=progress) as bar:
        for s in samples:
            predictions.append(_decompiled(s, model, config, greedy.get(s.key)))
            bar.update(1)

    out = {
        "config": dataclasses.asdict(config),
        "checkpoint": checkpoint.newest(store, (config.zoo, "meta", config.run))[-1],
        "programs": len(samples),
        "decodings": {d: metrics.summarise(r) for d, r in results.items()},
        "search": _summarise_search(predictions) if config.search.beam else {},
        "reader": _summarise_reader(predictions) if config.reader else {},
        "history": read_history(store, config.zoo, config.run),
        "lib": _lib(config, model) if config.lib else [],
    }
    folder = report_location(config)
    store.write_bytes("".join(json.dumps(p, sort_keys=True) + "\n" for p in predictions).encode(), *folder, "predictions.jsonl")
    store.write_bytes(json.dumps(out, indent=1).encode(), *folder, "report.json")
    store.write_bytes(report.markdown(out).encode(), *folder, "report.md")
    for name, png in report.plots(out).items():
        store.write_bytes(png, *folder, name)
    out["location"] = store.url_of(*folder)
    return out


def decodings(model, samples: list, config: EvalConfig, progress: bool = True) -> dict[str, list[metrics.Scored]]:
    """Each program of `samples` decoded teacher-forced and greedily (those of `config.decodings`), scored."""
    results: dict[str, list[metrics.Scored]] = {d: [] for d in config.decodings}
    bar = progress_bar(total=len(samples), desc=f"evaluate {config.kind}/{config.split}", unit="program", enabled=progress)
    for start in range(0, len(samples), config.batch_size):
        chunk = samples[start : start + config.batch_size]
        inputs = [check_inputs(s.program, config.inputs, seed=2) for s in chunk]
        if "teacher_forced" in results:
            examples = [example(s, model.config.max_chunks, model.config.weight_tokens) for s in chunk]
            tokenised = [(s, e, x) for s, e, x in zip(chunk, examples, inputs) if e is not None]
            predicted = model.teacher_forced(collate([e for _, e, _ in tokenised])) if tokenised else []
            results["teacher_forced"] += [metrics.score(s.key, s.program, p, x) for (s, _, x), p in zip(tokenised, predicted)]
        if "autoregressive" in results:
            predicted = model.generate([s.params for s in chunk], inputs=[(s.program.vocab, s.program.max_seq_len) for s in chunk])
            results["autoregressive"] += [metrics.score(s.key, s.program, p, x) for s, p, x in zip(chunk, predicted, inputs)]
        bar.update(len(chunk))
    bar.close()
    return results


def _decompiled(sample, model, config: EvalConfig, greedy: metrics.Scored | None) -> dict[str, Any]:
    """One line of predictions.jsonl: the greedy prediction, the checked search's and the reader's."""
    compiled, threshold = model_from_sample(sample)
    inputs = check_inputs(sample.program, config.inputs, seed=2)
    line: dict[str, Any] = {"key": sample.key, "kind": sample.kind, "true": sample.program.to_json(),
                            "greedy": None if greedy is None or greedy.predicted is None else greedy.predicted.to_json()}
    if config.search.beam:
        found = decompile(compiled, model, "meta", threshold, config.search)
        line["search"] = _scored(found, sample.program, inputs)
    if config.reader:
        line["reader"] = _scored(decompile(compiled, None, "reader", threshold), sample.program, inputs)
    return line


def _scored(found, true, inputs) -> dict[str, Any]:
    program = found.program
    functional = program is not None and (program == true or metrics.functionally_equivalent(true, program, inputs))
    return {"program": None if program is None else program.to_json(), "exact": program == true, "functional": functional,
            **found.evidence.to_json()}


def _summarise_search(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    found = [p["search"] for p in predictions]
    greedy = [p["search"]["greedy_agreement"] == 1.0 for p in predictions]
    return {
        "programs": len(found),
        "verified": _share([f["verified"] for f in found]),
        "exact": _share([f["exact"] for f in found]),
        "functional": _share([f["functional"] for f in found]),
        "false_verified": sum(f["verified"] and not f["functional"] for f in found),
        "greedy_agrees_fully": _share(greedy),
        "seconds_per_program": _share([f["seconds"] for f in found]),
        "candidates_per_program": _share([f["candidates"] for f in found]),
    }


def _summarise_reader(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    found = [p["reader"] for p in predictions]
    read = [f for f in found if f["program"] is not None]
    return {
        "programs": len(found),
        "read": _share([f["program"] is not None for f in found]),
        "exact": _share([f["exact"] for f in found]),
        "functional": _share([f["functional"] for f in found]),
        "wrong": sum(not f["functional"] for f in read),
        "identical_weights": _share([bool(f["identical_weights"]) for f in read]),
        "seconds_per_program": _share([f["seconds"] for f in found]),
    }


def _share(values: list) -> float:
    return sum(values) / len(values) if values else 0.0


def _lib(config: EvalConfig, model) -> list[dict[str, Any]]:
    """Tracr's lib programs, compiled and decompiled greedily; searched and read as the zoo's
    programs are when the evaluation searches and reads (each answer's figures kept apart)."""
    programs = tracr_lib_programs()
    compiled = {name: compile_program(program) for name, program in programs.items()}
    predicted = model.generate([c.params for c in compiled.values()], inputs=[(p.vocab, p.max_seq_len) for p in programs.values()])
    rows = []
    for (name, program), ids in zip(programs.items(), predicted):
        inputs = check_inputs(program, config.inputs, seed=2)
        scored = metrics.score(name, program, ids, inputs)
        source = scored.predicted.source() if scored.predicted is not None else "invalid (does not parse)"
        row = {"name": name, "lines": len(program.lines), "token_accuracy": scored.accuracy,
               "exact": scored.exact, "functional": scored.functional, "predicted": source}
        if config.search.beam:
            row["search"] = _scored(decompile(compiled[name], model, "meta", 1.0, config.search), program, inputs)
        if config.reader:
            row["reader"] = _scored(decompile(compiled[name], None, "reader", 1.0), program, inputs)
        rows.append(row)
    return rows
