"""`inverse-tracr run`: every stage through the same code path, a report with valid plots, reuse on rerun."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import yaml
from conftest import cli_env, interruptible

CONFIG = {
    "zoo": {"name": "e2e", "programs": 12, "shardSize": 6, "minOps": 3, "maxOps": 5, "kinds": ["standard", "compressed"]},
    "distill": {"shards": 1},
    "training": {"run": "t", "steps": 40, "transferSteps": 20, "batchSize": 6, "checkpointEvery": 20, "lr": 0.003},
    "evaluation": {"split": "all", "limit": 12, "repairRounds": 1, "budgetSeconds": 1},  # a 40-step model verifies nothing: a short search
}


def _run(config_path, *extra):
    return subprocess.run([sys.executable, "-m", "inverse_tracr.cli", "run", "--config", str(config_path), "--quiet", *extra],
                          env=cli_env(), capture_output=True, text=True, timeout=900)


def test_run_end_to_end_then_reuse_then_refuse_a_changed_zoo(tmp_path):
    store = tmp_path / "store"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "store": {"url": str(store)}}))
    first = _run(config)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "[1/4] generate" in out and "[2/4] distill: compressed" in out and "[4/4] evaluate" in out
    # transfer: the standard models first, then both kinds from those weights, evaluated
    assert "[3/4] train: run t-standard, preset tiny, 40 steps on standard\n" in out
    assert "[3/4] train: run t from run t-standard, preset tiny, 20 steps on standard, compressed\n" in out
    assert "compressed models (" in out and "standard models (12 programs)" in out
    compressed = json.loads((store / "e2e/meta/t/eval/compressed-all/report.json").read_text())
    marker = json.loads((store / "e2e/compressed/shard-000000.json").read_text())
    assert compressed["programs"] == marker["count"] >= 1 and marker["stats"]["teachers"] == 6
    assert "teacher_forced" in out and "autoregressive" in out and "≥90%" in out and "report:" in out

    folder = store / "e2e/meta/t/eval/standard-all"
    report = json.loads((folder / "report.json").read_text())
    assert report["programs"] == 12 and report["checkpoint"] == "step-00000020"
    assert len(report["lib"]) == 13 and compressed["lib"] == []  # Tracr's lib programs decompiled once, with the standard kind
    assert [h["step"] for h in report["history"]] == [10, 20]
    assert (store / "e2e/meta/t-standard/checkpoints/step-00000040/state.json").exists()
    for summary in report["decodings"].values():
        assert summary["programs"] == 12 and 0 < summary["token_accuracy"] <= 1
    assert "## Accuracy buckets" in (folder / "report.md").read_text()
    for name in ("buckets.png", "confusion.png", "learning_curve.png"):
        png = (folder / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" in png[-12:]

    started = time.monotonic()
    again = _run(config)
    assert again.returncode == 0, again.stderr[-3000:]
    assert time.monotonic() - started < 60
    assert "already finished" in again.stdout and again.stdout.count("already trained") == 2 and "reusing the report" in again.stdout

    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**CONFIG, "store": {"url": str(store)}, "zoo": {**CONFIG["zoo"], "maxOps": 6}}))
    refused = _run(changed)
    assert refused.returncode == 1 and "max_ops=5 (asked 6)" in refused.stderr and "Traceback" not in refused.stderr


def test_a_config_that_the_chart_would_reject_is_refused(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("zoo:\n  programz: 3\ntraining:\n  steps: 0\n")
    result = _run(config)
    assert result.returncode == 1 and "programz" in result.stderr and "training/steps" in result.stderr


def _interrupt_at(config_path, marker: str, ready=lambda: True) -> str:
    """Start `run`; once it has printed `marker` and `ready()` holds, send Ctrl-C. Its output."""
    process = subprocess.Popen([sys.executable, "-m", "inverse_tracr.cli", "run", "--config", str(config_path), "--quiet"],
                               env=cli_env(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=interruptible)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            deadline = time.monotonic() + 120
            while not ready() and time.monotonic() < deadline:
                time.sleep(0.2)
            process.send_signal(signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    return "".join(seen)


def test_interrupted_during_generation_and_training_then_rerun_completes(tmp_path):
    store = tmp_path / "store"
    config = tmp_path / "config.yaml"
    values = {**CONFIG, "store": {"url": str(store)}, "zoo": {**CONFIG["zoo"], "kinds": ["standard"]}}
    values["training"] = {**CONFIG["training"], "steps": 400, "checkpointEvery": 100}
    config.write_text(yaml.safe_dump(values))
    _interrupt_at(config, "[1/4] generate")
    assert not (store / "e2e/standard/shard-000001.json").exists()  # generation had not finished
    checkpoints = store / "e2e/meta/t/checkpoints"
    _interrupt_at(config, "[3/4] train", ready=lambda: (checkpoints / "step-00000100" / "state.json").exists())
    assert not (checkpoints / "step-00000400").exists()  # stopped mid-training, after a checkpoint

    result = _run(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already finished" in result.stdout  # the zoo was complete before training started
    report = json.loads((store / "e2e/meta/t/eval/standard-all/report.json").read_text())
    assert report["programs"] == 12 and report["checkpoint"] == "step-00000400"
    assert [h["step"] for h in report["history"]][-1] == 400
