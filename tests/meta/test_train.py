"""Training: a tiny model that learns, runs that resume exactly, skip corrupt shards, and keep data-parallel ranks in sync."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch
from conftest import cli_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from inverse_tracr.compile.model import Layout
from inverse_tracr.meta import checkpoint
from inverse_tracr.meta.config import MetaConfig, TrainConfig
from inverse_tracr.meta.data import collate, example
from inverse_tracr.meta.train import TrainError, load_model, loss_and_accuracy, read_history, train, training_urls
from inverse_tracr.programs import ProgramError
from inverse_tracr.zoo import read_samples
from inverse_tracr.zoo.store import Store


def test_tiny_model_overfits_32_programs(zoo32, overfit):
    model, logs = overfit
    samples = list(read_samples(str(zoo32 / "z/standard/shard-{000000..000001}.tar")))
    assert len(samples) == 32
    batch = collate([example(s, 128, model.config.weight_tokens) for s in samples])
    with torch.no_grad():
        logits = model(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"], batch["entries"])
    _, accuracy = loss_and_accuracy(logits, batch["targets"])
    assert accuracy >= 0.95
    exact = 0
    for s in samples[:10]:
        try:
            # the zoo's vocab and length, from the run; the output's labels from the sample's layout
            exact += model.decompile(s.params, output_values=Layout.from_json(s.meta["model"]).output_values) == s.program
        except ProgramError:
            pass  # a wrong prediction, like any other
    assert exact >= 8
    # TensorBoard has the figures of every 10th step, the last one as the run's history recorded it
    events = EventAccumulator(str(next(logs.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    logged = events.Scalars("token_accuracy")
    assert [e.step for e in logged] == list(range(10, 301, 10)) and set(events.Tags()["scalars"]) >= {"loss", "lr"}
    assert logged[-1].value == pytest.approx(read_history(Store(str(zoo32)), "z", "overfit")[-1]["token_accuracy"])


def test_the_tests_reading_the_overfit_model_share_a_worker(request, overfit):
    """Under `make test` (xdist, --dist loadgroup) a test reading `overfit` carries the group suffix xdist
    schedules by (tests/conftest.py); without it each worker trains the model again (~5 min of CI)."""
    if not request.config.getoption("loadgroup", False):
        pytest.skip("not on an xdist worker with --dist loadgroup")
    assert request.node.nodeid.endswith("@overfit")


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_a_stopped_run_resumes_to_the_same_parameters(small_zoo, tmp_path, precision):
    base = TrainConfig(store=str(small_zoo), zoo="small", split=None, steps=8, batch_size=4, warmup=2, checkpoint_every=4, shuffle_buffer=8,
                       mixed_precision=precision, model=MetaConfig(preset="tiny", max_chunks=128, dropout=0.1, input_noise=0.05, input_dropout=0.1))
    whole, pieces = f"whole-{precision}", f"pieces-{precision}"
    train(dataclasses.replace(base, run=whole), logdir=str(tmp_path / "a"), progress=False)
    stopped = train(dataclasses.replace(base, run=pieces), stop_after=4, logdir=str(tmp_path / "b"), progress=False)
    assert stopped["step"] == 4
    # resumed without keeping decoded examples: what only changes the time may differ, and changes nothing
    train(dataclasses.replace(base, run=pieces, cache_mb=0), logdir=str(tmp_path / "b"), progress=False)
    expected, resumed = (load_model(str(small_zoo), "small", run).state_dict() for run in (whole, pieces))
    for name, a in expected.items():
        assert torch.equal(a, resumed[name]), name
    # every checkpoint stays loadable (a learning curve reads them all): step 4 alike in both runs
    folders = {run: checkpoint.complete(Store(str(small_zoo)), ("small", "meta", run)) for run in (whole, pieces)}
    assert [f[-1] for f in folders[whole]] == [f[-1] for f in folders[pieces]] == ["step-00000004", "step-00000008"]
    at_4 = [load_model(str(small_zoo), "small", run, folders[run][0]).state_dict() for run in (whole, pieces)]
    assert all(torch.equal(a, at_4[1][name]) for name, a in at_4[0].items())
    assert not all(torch.equal(a, expected[name]) for name, a in at_4[0].items())
    with pytest.raises(TrainError, match=r"other settings \(lr=0\.\d+ \(asked 1\.0\)\); use another run name .* or remove .*/small/meta/"):
        train(dataclasses.replace(base, run=pieces, lr=1.0), progress=False)
    with pytest.raises(TrainError, match=r"\(model\.entries=True \(asked False\)\)"):  # nested settings by name
        train(dataclasses.replace(base, run=pieces, model=dataclasses.replace(base.model, entries=False)), progress=False)
    # a run recorded before batches were sorted by size trained on random batches, and resumes only so
    recorded = small_zoo / "small/meta" / pieces / "config.json"
    recorded.write_text(json.dumps({k: v for k, v in json.loads(recorded.read_text()).items() if k != "size_pool"}))
    with pytest.raises(TrainError, match=r"\(size_pool=1 \(asked 16\)\)"):
        train(dataclasses.replace(base, run=pieces), progress=False)
    assert train(dataclasses.replace(base, run=pieces, size_pool=1), progress=False)["step"] == 8


def test_bf16_changes_the_arithmetic_not_the_stored_float32_weights(small_zoo, tmp_path):
    base = TrainConfig(store=str(small_zoo), zoo="small", split=None, steps=8, batch_size=4, warmup=2, shuffle_buffer=0,
                       model=MetaConfig(preset="tiny", max_chunks=128))
    figures, stored = {}, {}
    for p in ("no", "bf16"):
        figures[p] = train(dataclasses.replace(base, run=f"precision-{p}", mixed_precision=p), logdir=str(tmp_path / p), progress=False)
        stored[p] = safetensors.torch.load_file(small_zoo / f"small/meta/precision-{p}/checkpoints/step-00000008/model.safetensors")
    assert figures["bf16"]["loss"] == pytest.approx(figures["no"]["loss"], rel=0.05)
    assert stored["no"].keys() == stored["bf16"].keys()
    assert {t.dtype for s in stored.values() for t in s.values()} == {torch.float32}  # master weights stay float32
    assert any(not torch.equal(stored["no"][k], stored["bf16"][k]) for k in stored["no"])  # autocast was in effect


def test_a_corrupt_shard_in_the_training_set_is_skipped_with_a_warning(small_zoo, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(small_zoo / "small", store / "small")
    (store / "small/standard/shard-000000.tar").write_bytes(b"garbage" * 100)  # marker still says finished
    config = TrainConfig(store=str(store), zoo="small", split=None, steps=3, batch_size=4, warmup=1, shuffle_buffer=0,
                         model=MetaConfig(preset="tiny", max_chunks=128))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = train(config, logdir=str(tmp_path / "logs"), progress=False)
    assert figures["step"] == 3 and np.isfinite(figures["loss"])
    assert any("shard-000000.tar" in str(w.message) for w in caught)


def test_two_cpu_processes_train_in_lockstep(small_zoo, tmp_path):
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "inverse_tracr.cli",
        "train", "--store", str(small_zoo), "--zoo", "small", "--run", "ddp", "--steps", "4", "--batch-size", "3",
        "--warmup", "1", "--checkpoint-every", "4", "--logdir", str(tmp_path), "--quiet",
    ]
    result = subprocess.run(command, env=cli_env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 ranks, parameters identical across ranks" in result.stdout


def test_a_new_run_starts_from_another_runs_weights_and_refuses_a_run_it_cannot_start_from(small_zoo, tmp_path):
    base = TrainConfig(store=str(small_zoo), zoo="small", split=None, steps=4, batch_size=4, warmup=1, checkpoint_every=4, shuffle_buffer=8,
                       model=MetaConfig(preset="tiny", max_chunks=128))
    train(dataclasses.replace(base, run="source"), logdir=str(tmp_path / "a"), progress=False)
    # one step at a negligible learning rate: the weights it started from, still
    after = dataclasses.replace(base, steps=1, lr=1e-12, checkpoint_every=1, model=dataclasses.replace(base.model, dropout=0.1))
    train(dataclasses.replace(after, run="transferred", init_from="source"), logdir=str(tmp_path / "b"), progress=False)
    train(dataclasses.replace(after, run="scratch"), logdir=str(tmp_path / "c"), progress=False)
    source, transferred, scratch = (load_model(str(small_zoo), "small", run).state_dict() for run in ("source", "transferred", "scratch"))
    assert all(torch.allclose(a, transferred[name], atol=1e-6) for name, a in source.items())
    assert not all(torch.allclose(a, scratch[name], atol=1e-3) for name, a in source.items())
    runs = small_zoo / "small/meta"
    with pytest.raises(TrainError, match=r"cannot start from run small/meta/source: it is another model \(preset='tiny' \(asked 'small'\)\)"):
        train(dataclasses.replace(after, run="bigger", init_from="source", model=MetaConfig(preset="small", max_chunks=128)), progress=False)
    with pytest.raises(TrainError, match=r"run small/meta/nowhere .* has no checkpoint"):
        train(dataclasses.replace(after, run="lost", init_from="nowhere"), progress=False)
    assert not (runs / "bigger").exists() and not (runs / "lost").exists()  # nothing left behind: the same command, mended, starts


def test_students_are_read_oversample_times_for_each_time_the_standard_models_are(tmp_path):
    store = Store(str(tmp_path))
    for kind, shards in (("standard", 3), ("compressed", 2), ("natural", 1)):
        for i in range(shards):
            store.write_bytes(b"{}", "z", kind, f"shard-{i:06d}.json")  # a shard counts as finished by its marker
    config = TrainConfig(store=str(tmp_path), zoo="z", kinds=("standard", "compressed", "natural"), oversample=3)
    urls = [url.rsplit("/z/", 1)[1] for url in training_urls(store, config)]
    assert sorted(set(urls)) == [*(f"compressed/shard-00000{i}.tar" for i in (0, 1)), "natural/shard-000000.tar",
                                  *(f"standard/shard-00000{i}.tar" for i in (0, 1, 2))]
    assert {url: urls.count(url) for url in urls} == {url: 1 if url.startswith("standard") else 3 for url in urls}
    assert len(training_urls(store, dataclasses.replace(config, oversample=1))) == 6
    with pytest.raises(ValueError, match="oversample must be at least 1, got 0"):
        dataclasses.replace(config, oversample=0)
