"""The command line as a user meets it: help, one-line errors, and interrupted runs that resume."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import cli_env, interruptible

from inverse_tracr import cli
from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.meta.config import MetaConfig, SearchConfig, TrainConfig
from inverse_tracr.zoo.config import ZooConfig
from inverse_tracr.zoo.generate import generate

CLI = [sys.executable, "-m", "inverse_tracr.cli"]
SETTINGS = ["--shard-size", "3", "--min-ops", "3", "--max-ops", "5", "--seed", "3", "--workers", "1", "--quiet"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=cli_env(), capture_output=True, text=True, timeout=timeout)


def test_help_explains_each_command():
    top = run("--help")
    assert top.returncode == 0 and "generate" in top.stdout and "inspect" in top.stdout and "examples:" in top.stdout
    gen = run("generate", "--help")
    for option in ("--store", "--zoo", "--programs", "--shard-size", "--shards", "--workers", "--min-ops", "--max-ops", "--vocab-size", "--max-seq-len", "--seed"):
        assert option in gen.stdout


def test_options_fill_the_stage_configs_whose_defaults_are_the_cli_defaults():
    parse = cli.build_parser().parse_args
    assert cli._config(ZooConfig, parse(["generate"])) == ZooConfig()
    assert cli._config(ZooConfig, parse(["generate", "--max-ops", "6", "--random-tables", "0.5"])) == ZooConfig(max_ops=6, random_tables=0.5)
    assert cli._config(DistillConfig, parse(["distill", "--kind", "natural"])) == DistillConfig(kind="natural")
    assert cli._config(SearchConfig, parse(["decompile", "x.tar", "--beam", "2"])) == SearchConfig(beam=2)
    args = parse(["train", "--zoo", "z", "--steps", "7", "--weight-tokens", "chunks", "--kinds", '["standard","compressed"]'])
    assert cli._config(TrainConfig, args, model=cli._config(MetaConfig, args)) == TrainConfig(
        store="./zoo-store", zoo="z", steps=7, kinds=("standard", "compressed"), model=MetaConfig(weight_tokens="chunks"))
    assert cli._config(MetaConfig, parse(["train", "--zoo", "z"])) == MetaConfig()
    for given, drawn in (([], ("rotation",)), (["--augment", "none"], ()), (["--augment", "hidden,rotation"], ("hidden", "rotation"))):
        args = parse(["train", "--zoo", "z", "--oversample", "4", *given])
        assert cli._config(TrainConfig, args, model=cli._config(MetaConfig, args)) == TrainConfig(store="./zoo-store", zoo="z", augment=drawn, oversample=4)
    assert cli._config(MetaConfig, parse(["train", "--zoo", "z", "--no-entries"])) == MetaConfig(entries=False)
    for given, start in ((["--init-from", "std"], "std"), (["--init-from", ""], None)):  # the chart passes "" for none
        assert cli._config(TrainConfig, parse(["train", "--zoo", "z", *given]), model=MetaConfig()).init_from == start
    # a setting that shapes a zoo can be set from the command line
    assert {f.name for f in dataclasses.fields(ZooConfig)} <= vars(parse(["generate"])).keys()


def test_bad_input_is_one_clear_line_without_traceback(tmp_path):
    cases = [
        (["generate", "--programs", "0"], 2, "at least 1"),
        (["generate", "--shards", "5"], 2, "expected A:B"),
        (["generate", "--store", str(tmp_path), "--min-ops", "6", "--max-ops", "3"], 1, "min_ops <= max_ops"),
        (["generate", "--store", str(tmp_path), "--vocab-size", "50"], 1, "vocab_size"),
        (["generate", "--store", "nosuch://x"], 1, "unsupported store URL"),
        (["inspect", str(tmp_path / "missing.tar")], 1, "no such shard"),
        # every stage's own error is one line too (one base class, caught once)
        (["train", "--store", str(tmp_path), "--zoo", "none", "--steps", "1"], 1, "no finished shards of kinds standard"),
        (["evaluate", "--store", str(tmp_path), "--zoo", "none", "--run", "x"], 1, "no finished shards in none/standard"),
        (["distill", "--store", str(tmp_path), "--zoo", "none"], 1, "no zoo 'none'"),
    ]
    for args, code, fragment in cases:
        result = run(*args)
        assert result.returncode == code, (args, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith(("inverse-tracr", "usage")) or code == 2


def test_inspect_shows_program_lines_layout_and_verification(small_zoo):
    result = run("inspect", str(small_zoo / "small/standard/shard-000001.tar"), "--index", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for fragment in ("program = v", "canonical lines (", "residual width", "token_embed/embeddings", "verification (stored): passed", "re-check on 32 fresh inputs: passed"):
        assert fragment in out


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.02)


def test_runs_interrupted_by_ctrl_c_or_kill_resume_to_identical_shards(tmp_path):
    reference = tmp_path / "reference"
    config = ZooConfig(shard_size=3, min_ops=3, max_ops=5, seed=3)
    generate(str(reference), "z", config, programs=15, workers=2, progress=False)

    store = tmp_path / "interrupted"
    args = [*CLI, "generate", "--store", str(store), "--zoo", "z", "--programs", "15", *SETTINGS]
    for stop in (signal.SIGINT, signal.SIGKILL):
        process = subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
        done_before = len(list((store / "z/standard").glob("*.json"))) if store.exists() else 0
        _wait_for(store / f"z/standard/shard-{done_before:06d}.json", process)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
        if stop == signal.SIGINT:
            assert process.returncode == 130 and "rerun the same command to continue" in stderr
        # whatever is marked finished is complete: its tar is the reference's
        for marker in (store / "z/standard").glob("*.json"):
            tar = marker.with_suffix(".tar")
            assert tar.read_bytes() == (reference / "z/standard" / tar.name).read_bytes()
    finished = run("generate", "--store", str(store), "--zoo", "z", "--programs", "15", *SETTINGS)
    assert finished.returncode == 0, finished.stderr
    assert "skipped" in finished.stdout
    tars = sorted(p.name for p in (reference / "z/standard").glob("*.tar"))
    assert tars == sorted(p.name for p in (store / "z/standard").glob("*.tar")) and len(tars) == 5
    for name in tars:
        assert (store / "z/standard" / name).read_bytes() == (reference / "z/standard" / name).read_bytes()
    assert not list((store / "z/standard").glob("*.tmp-*"))
