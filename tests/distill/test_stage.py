"""The distill stage: shards of students that reproduce their programs, byte-identical after an interruption."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess

import pytest
from conftest import cli_env, interruptible
from distill_tools import agreement_on_fresh_inputs

from inverse_tracr.compile.model import CompiledModel, Layout
from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.distill.recipe import held_out_inputs
from inverse_tracr.distill.stage import DistillError, check_stored, distill_zoo
from inverse_tracr.zoo.shards import Reader, finished_shards, read_marker
from inverse_tracr.zoo.store import Store


@pytest.fixture(scope="module")
def compressed_zoo(small_zoo, tmp_path_factory):
    store = tmp_path_factory.mktemp("distilled")
    shutil.copytree(small_zoo / "small", store / "small")
    summary = distill_zoo(str(store), "small", DistillConfig(), seed=3, shards=[0], workers=2, progress=False)
    assert summary.teachers == 6 and summary.shards_written == 1
    return store, summary


def test_compressed_shard_models_reproduce_their_programs(compressed_zoo):
    store, summary = compressed_zoo
    samples = list(Reader(str(store / "small/compressed/shard-000000.tar")))
    assert len(samples) == summary.accepted >= 3  # most of 6 pass
    marker = read_marker(Store(str(store)), "small", "compressed", 0)
    assert marker["stats"]["teachers"] == 6 and marker["stats"]["accepted"] == len(samples)
    teachers = {s.key: s for s in Reader(str(store / "small/standard/shard-000000.tar"))}
    for sample in samples:
        meta = sample.meta
        assert sample.kind == "compressed" and sample.key in teachers
        assert meta["distillation"]["agreement"] >= 0.9 and meta["distillation"]["layer_loss"] <= 0.05
        assert len(meta["teacher_id"]) == 16
        layout = Layout.from_json(meta["model"])
        assert layout.readout and layout.residual_width == meta["distillation"]["width"]
        assert layout.residual_width < Layout.from_json(teachers[sample.key].meta["model"]).residual_width
        model = CompiledModel(sample.params, layout)
        # The stored model is exactly what was checked: the same inputs give the recorded figures…
        recorded = check_stored(model, sample.program, held_out_inputs(sample.program, DistillConfig(), meta["seed"]))
        assert recorded == meta["verification"] and recorded["accuracy"] >= 0.9
        # …and it computes the program on inputs it never saw (a 90 % gate: some land just below).
        assert agreement_on_fresh_inputs(model, sample.program) >= 0.8


def test_interrupted_distill_rerun_gives_identical_bytes(compressed_zoo, small_zoo, tmp_path, monkeypatch):
    store, _ = compressed_zoo
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a cold compilation cache, warm for the rerun
    shutil.copytree(small_zoo / "small", tmp_path / "small")
    command = ["inverse-tracr", "distill", "--store", str(tmp_path), "--zoo", "small", "--shards", "0:1", "--workers", "1", "--seed", "3",
               "--log-every-seconds", "0"]
    process = subprocess.Popen(command, env=cli_env(), stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    # Interrupted mid-shard: once the first student is done (a progress line for each), before the shard is.
    seen = []
    while not re.search(r"distill compressed: 1/6 model", seen[-1] if seen else ""):
        line = process.stderr.readline()
        assert line, (process.wait(), seen)
        seen.append(line)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert finished_shards(Store(str(tmp_path)), "small", "compressed") == set()  # nothing looks complete
    summary = distill_zoo(str(tmp_path), "small", DistillConfig(), seed=3, shards=[0], workers=1, progress=False)
    assert summary.shards_written == 1
    name = "small/compressed/shard-000000.tar"
    assert (tmp_path / name).read_bytes() == (store / name).read_bytes()  # also: 1 worker == 2 workers
    assert any((tmp_path / "cache/inverse-tracr/jax").iterdir())  # compiled steps were kept for later runs
    again = distill_zoo(str(tmp_path), "small", DistillConfig(), seed=3, shards=[0], workers=1, progress=False)
    assert again.shards_written == 0 and again.shards_skipped == 1


def test_distill_refuses_other_settings_and_missing_shards(compressed_zoo):
    store, _ = compressed_zoo
    with pytest.raises(DistillError, match=r"compression=2.0 \(asked 3"):
        distill_zoo(str(store), "small", DistillConfig(compression=3), seed=3, shards=[0], progress=False)
    with pytest.raises(DistillError, match="not finished"):
        distill_zoo(str(store), "small", DistillConfig(), seed=3, shards=[5], progress=False)
    result = subprocess.run(
        ["inverse-tracr", "distill", "--store", str(store), "--zoo", "nope", "--kind", "natural"], env=cli_env(), capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no zoo 'nope'" in result.stderr
