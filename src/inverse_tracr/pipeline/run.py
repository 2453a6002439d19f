"""`inverse-tracr run`: every stage on one machine — generate, distill, train, evaluate — then the results.

Configured by a preset or by a YAML file with the *same structure as the Helm chart's values*
(validated by the chart's own `values.schema.json`, so a file that works here installs there).
Each stage reuses what exists: finished shards, the newest checkpoint, a report already written
for that checkpoint; a changed zoo or training config is refused by the stage that owns it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.distill.stage import distill_zoo
from inverse_tracr.errors import InverseTracrError
from inverse_tracr.evaluate.config import EvalConfig
from inverse_tracr.evaluate.run import evaluate, existing_report
from inverse_tracr.meta.config import MetaConfig, SearchConfig, TrainConfig
from inverse_tracr.meta.train import train
from inverse_tracr.zoo.config import ZooConfig
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.shards import finished_shards, read_marker
from inverse_tracr.zoo.store import Store


class RunConfigError(InverseTracrError, ValueError):
    """The run's configuration file is unreadable or does not match the chart's values schema."""


#: Presets, in Helm-values form. `demo` is `make run`'s: a meaningful result in minutes on 2 cores.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "store": {"url": "./zoo-store"},
        # 1,200 steps (~90 s with examples kept in memory) verify 44 % of 300 held-out programs, where
        # 600 verified 29 %; 2,000 programs for 1,200 steps verified 39 % (one more minute to generate).
        "zoo": {"name": "demo", "programs": 1000, "shardSize": 100, "minOps": 4, "maxOps": 8, "kinds": ["standard", "compressed"]},
        "distill": {"shards": 1},
        # One run on both kinds: at this budget transfer (1,200 standard + 400 steps of both) fell to
        # 3.7 % exact / 8.3 % functional greedy on 300 held-out programs, from 5.3 / 14.7 %; it pays
        # once the standard model has converged (values.yaml's transferSteps). Batches of 8: on a CPU
        # more, smaller steps learn more per second (4,000 steps of 8 cost what 1,200 of 32 did).
        "training": {"run": "tiny", "preset": "tiny", "steps": 4000, "transferSteps": 0, "batchSize": 8},
        "evaluation": {"split": "val"},
    },
    "small": {
        "store": {"url": "./zoo-store"},
        "zoo": {"name": "small", "programs": 20000, "shardSize": 500, "minOps": 4, "maxOps": 6},
        "training": {"run": "small", "preset": "small", "steps": 5000, "batchSize": 32},
        "evaluation": {"split": "val", "limit": 1000},
    },
}


@dataclasses.dataclass(frozen=True)
class Plan:
    store: str
    zoo: ZooConfig
    zoo_name: str
    programs: int
    workers: int
    distill: tuple[DistillConfig, ...]  # one per distilled kind
    distill_shards: range | None  # None: every standard shard
    train: tuple[TrainConfig, ...]  # in order; the last one is evaluated
    evaluate: tuple[EvalConfig, ...]  # one per kind


#: `run` is the local runner, used from a source checkout (images run the single stages).
CHART = Path(__file__).resolve().parents[3] / "helm" / "inverse-tracr"


def _chart(name: str) -> Any:
    """The chart's values.yaml or values.schema.json: one source for the chart and the local runner."""
    try:
        return yaml.safe_load((CHART / name).read_text())
    except OSError:
        raise RunConfigError(f"the chart's {name} is not in {CHART}: run from a source checkout") from None


def _merge(base: dict, overlay: dict) -> dict:
    """Helm's merge of values: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_values(path: str | None, preset: str) -> dict[str, Any]:
    """The chart's defaults, then the preset, then a values file — merged as Helm merges them and
    checked against the chart's schema, as `helm install` would."""
    import jsonschema

    if preset not in PRESETS:
        raise RunConfigError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    values = _merge(_chart("values.yaml"), PRESETS[preset])
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise RunConfigError(f"cannot read {path}: {error}") from None
        if not isinstance(loaded, dict):
            raise RunConfigError(f"{path}: expected a mapping of values at the top level")
        values = _merge(values, loaded)
    errors = sorted(jsonschema.Draft7Validator(_chart("values.schema.json")).iter_errors(values), key=lambda e: list(e.path))
    if errors:
        raise RunConfigError("; ".join(f"{'/'.join(map(str, e.path)) or 'values'}: {e.message}" for e in errors[:5]))
    return values


def plan(values: dict[str, Any]) -> Plan:
    """Stage configs from merged Helm-style values. Local choices: every core compiles, one
    data-loader worker, no mixed precision on a CPU."""
    zoo, training, evaluation = values["zoo"], values["training"], values["evaluation"]
    store = values["store"]["url"]
    zoo_config = ZooConfig(
        shard_size=zoo["shardSize"], min_ops=zoo["minOps"], max_ops=zoo["maxOps"],
        vocab_size=zoo["vocabSize"], max_seq_len=zoo["maxSeqLen"], seed=zoo["seed"], random_tables=zoo["randomTables"],
    )
    kinds = tuple(zoo["kinds"])

    def train_config(run: str, kinds: tuple[str, ...], steps: int, init_from: str | None = None) -> TrainConfig:
        return TrainConfig(
            store=store, zoo=zoo["name"], run=run, kinds=kinds, init_from=init_from,
            model=MetaConfig(preset=training["preset"]), steps=steps, batch_size=training["batchSize"],
            lr=training.get("lr"), warmup=min(100, steps // 10), checkpoint_every=training["checkpointEvery"],
            augment=tuple(training["augment"]), oversample=training["oversample"], mixed_precision="no", loader_workers=1,
        )

    # Transfer (thesis §8.5): the standard models first, then every kind from those weights. On 4,000
    # programs and 1,246 students, 3,000 + 1,000 steps decompiled held-out standard programs 34 % exactly
    # against 26 % for 4,000 steps on both kinds from the start, the students' tokens alike (85 %).
    if training["transferSteps"] and kinds != ("standard",):
        standard = f"{training['run']}-standard"
        trains = (train_config(standard, ("standard",), training["steps"]),
                  train_config(training["run"], kinds, training["transferSteps"], init_from=standard))
    else:
        trains = (train_config(training["run"], kinds, training["steps"]),)
    students = values["distill"]
    distill = tuple(
        DistillConfig(kind=kind, compression=students["compression"], max_steps=students["maxSteps"], attempts=students["attempts"])
        for kind in zoo["kinds"] if kind != "standard"
    )  # fmt: skip
    evals = tuple(  # Tracr's lib programs are compiled models: decompiled once, with the standard kind
        EvalConfig(store=store, zoo=zoo["name"], run=training["run"], kind=kind, split=evaluation["split"], limit=evaluation["limit"], lib=kind == "standard",
                   search=SearchConfig(beam=evaluation["beam"], repair_rounds=evaluation["repairRounds"], budget_seconds=evaluation["budgetSeconds"]))
        for kind in zoo["kinds"]
    )  # fmt: skip
    shards = range(students["shards"]) if students["shards"] else None
    return Plan(store, zoo_config, zoo["name"], zoo["programs"], os.cpu_count() or 1, distill, shards, trains, evals)


def _samples(store: str, zoo: str, kind: str) -> int:
    """Samples in the finished shards of a kind (from the markers)."""
    location = Store(store)
    return sum(read_marker(location, zoo, kind, i)["count"] for i in finished_shards(location, zoo, kind))


def run(p: Plan, progress: bool = True, say=print) -> dict[str, dict[str, Any]]:
    """Every stage in order; returns the evaluation report of each kind."""
    say(f"[1/4] generate: {p.programs} verified programs into {p.store}/{p.zoo_name}")
    summary = generate(p.store, p.zoo_name, p.zoo, programs=p.programs, workers=p.workers, progress=progress)
    for line in summary.lines():
        say("      " + line)
    say(f"[2/4] distill: {', '.join(c.kind for c in p.distill) or 'no students (zoo.kinds is [standard])'}")
    for config in p.distill:
        students = distill_zoo(p.store, p.zoo_name, config, seed=p.zoo.seed, shards=p.distill_shards, workers=p.workers, progress=progress)
        for line in students.lines():
            say("      " + line)
    for config in p.train:
        start = f" from run {config.init_from}" if config.init_from else ""
        say(f"[3/4] train: run {config.run}{start}, preset {config.model.preset}, {config.steps} steps on {', '.join(config.kinds)}")
        figures = train(config, logdir=str(Path("runs") / p.zoo_name / config.run), progress=progress)
        say(f"      step {figures['step']}" + (f", loss {figures['loss']:.3f}, token accuracy {figures['token_accuracy']:.3f}" if "loss" in figures else " (already trained)"))
    reports = {}
    for config in p.evaluate:
        say(f"[4/4] evaluate: {config.kind} models, split {config.split}")
        if not _samples(p.store, p.zoo_name, config.kind):
            say(f"      no {config.kind} models passed their gates: nothing to evaluate")
            continue
        report = existing_report(config)
        if report is not None:
            say("      reusing the report already written for the newest checkpoint")
        else:
            report = evaluate(config, progress=progress)
        reports[config.kind] = report
    return reports
