"""The meta-model: exact weight tokens, program tokens that round-trip, a tiny model that learns,
training that resumes exactly, skips corrupt shards, and keeps data-parallel ranks in sync."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch

from conftest import cli_env
from inverse_tracr.compile.model import Layout
from inverse_tracr.evaluate.metrics import output_labels
from inverse_tracr.meta import vocab, weights
from inverse_tracr.meta.data import collate, example, quiet_handover
from inverse_tracr.meta.model import MAX_PROGRAM_TOKENS, MetaConfig, MetaModel
from inverse_tracr.meta.presets import PRESETS
from inverse_tracr.meta.train import TrainConfig, TrainError, load_model, loss_and_accuracy, train
from inverse_tracr.pipeline.run import load_values, plan
from inverse_tracr.programs import ProgramError
from inverse_tracr.programs.sampler import SamplerConfig, sample_program
from inverse_tracr.programs.tracr_lib import tracr_lib_programs
from inverse_tracr.zoo import read_samples


def test_weight_chunks_reassemble_to_the_original_tensors(small_zoo):
    for sample in read_samples(str(small_zoo / "small/standard/shard-000000.tar")):
        tokens = weights.tokenize(sample.params)
        back = weights.untokenize(tokens)
        assert back.keys() == sample.params.keys()
        for name, array in sample.params.items():
            np.testing.assert_array_equal(back[name], array)
        assert tokens.last.sum() == len(sample.params)  # one last chunk per tensor
        names = [name for name, _ in tokens.shapes]
        assert names[:2] == ["pos_embed/embeddings", "token_embed/embeddings"]
        assert names[2:8] == [f"transformer/layer_0/attn/{m}/{p}" for m in ("query", "key", "value") for p in ("w", "b")]
        features = tokens.features()
        assert features.shape == (len(tokens), weights.FEATURES)
        assert (features[:, weights.CHUNK : weights.CHUNK + len(weights.PARAM_TYPES)].sum(1) == 1).all()


def _permute_residual(params: dict[str, np.ndarray], order: np.ndarray) -> dict[str, np.ndarray]:
    """The same model with its residual dimensions reordered: every tensor's residual axis at once."""
    out = {}
    for name, array in params.items():
        if name.endswith(("embeddings", "attn/linear/w", "mlp/linear_2/w")):
            out[name] = array[..., order]
        elif name.endswith(("attn/linear/b", "mlp/linear_2/b")):
            out[name] = array[order]
        elif name.endswith("/w"):
            out[name] = array[order]
        else:
            out[name] = array
    return out


def test_neuron_tokens_hold_each_unit_in_residual_coordinates_and_follow_a_permuted_basis(small_zoo):
    r = weights.RESIDUAL
    for sample in read_samples(str(small_zoo / "small/standard/shard-000000.tar")):
        params = sample.params
        tokens = weights.features(params, "neurons")
        assert tokens.shape[1] == weights.width("neurons")
        kinds = np.array(weights.PARAM_TYPES)[tokens[:, weights.floats("neurons") : weights.floats("neurons") + len(weights.PARAM_TYPES)].argmax(1)]
        d = params["token_embed/embeddings"].shape[1]
        # each MLP hidden unit that exists is one token: input column, output row, bias
        w1, w2 = params["transformer/layer_0/mlp/linear_1/w"], params["transformer/layer_0/mlp/linear_2/w"]
        live = [j for j in range(w1.shape[1]) if w1[:, j].any() or w2[j].any()]
        layer0 = tokens[:, weights.floats("neurons") + len(weights.PARAM_TYPES)] == 1
        mlp = tokens[(kinds == "mlp_in_w") & layer0]
        assert len(mlp) == len(live) > 0
        np.testing.assert_array_equal(mlp[:, :d], w1[:, live].T)
        np.testing.assert_array_equal(mlp[:, r : r + d], w2[live])
        assert not mlp[:, d:r].any() and not mlp[:, r + d : 2 * r].any()
        # the embeddings write one row per token and position
        assert (kinds == "token_embed").sum() == (np.abs(params["token_embed/embeddings"]).sum(1) > 0).sum()
        # the same model in another residual basis: the same tokens, their vectors permuted alike
        order = np.random.default_rng(0).permutation(d)
        permuted = weights.features(_permute_residual(params, order), "neurons")
        np.testing.assert_array_equal(permuted[:, :d], tokens[:, :d][:, order])
        np.testing.assert_array_equal(permuted[:, r : r + d], tokens[:, r : r + d][:, order])
        np.testing.assert_array_equal(permuted[:, 2 * r :], tokens[:, 2 * r :])


def test_execution_order_puts_query_before_mlp_and_weights_before_biases():
    order = sorted(["transformer/layer_1/mlp/linear_1/w", "transformer/layer_0/mlp/linear_2/b", "transformer/layer_0/attn/query/b",
                    "transformer/layer_0/attn/query/w", "token_embed/embeddings", "extra/readout"], key=lambda n: weights.describe(n)[0])
    assert order == ["token_embed/embeddings", "transformer/layer_0/attn/query/w", "transformer/layer_0/attn/query/b",
                     "transformer/layer_0/mlp/linear_2/b", "transformer/layer_1/mlp/linear_1/w", "extra/readout"]


def test_program_tokens_round_trip_and_the_grammar_admits_every_true_program():
    config = SamplerConfig(min_ops=2, max_ops=12, random_tables=0.3)
    programs = [sample_program(random.Random(seed), config) for seed in range(80)] + list(tracr_lib_programs().values())
    for program in programs:
        ids = vocab.encode(program)
        # table entries are positions in value sets: the model's own labels come back from its layout
        assert vocab.decode(ids, program.vocab, program.max_seq_len, output_labels(program)) == program
        grammar = vocab.Grammar(program.vocab, program.max_seq_len)
        for token in ids[1:]:
            assert token in grammar.allowed(), (program.source(), vocab.TOKENS[token])
            grammar.step(token)
        assert grammar.done
    assert sum(vocab.INDEX[vocab.TABLE] in vocab.encode(p) for p in programs) > 20


@pytest.mark.parametrize("tokens, fragment", [
    ([vocab.BOS, "Map", "tokens", "NA", "@lt_3"], "end-of-program"),
    ([vocab.BOS, "Map", "tokens", "NA", "@lt_3", vocab.EOS], "cannot come here"),
    ([vocab.BOS, "Aggregate", "v1", "tokens", "NA", "v1", vocab.EOS], "cannot come here"),
    ([vocab.BOS, "Map", "tokens", "NA", vocab.TABLE, "#0", "#1", "v1", vocab.EOS], "cannot come here"),  # 5 entries due
])
def test_invalid_token_sequences_get_a_clear_verdict(tokens, fragment):
    with pytest.raises(ProgramError, match=fragment):
        vocab.decode([vocab.INDEX[t] for t in tokens], (0, 1, 2, 3, 4), 5)


def test_tiny_model_overfits_32_programs(zoo32, overfit):
    model, logs = overfit
    samples = list(read_samples(str(zoo32 / "z/standard/shard-{000000..000001}.tar")))
    assert len(samples) == 32
    batch = collate([example(s, 128, model.config.weight_tokens) for s in samples])
    with torch.no_grad():
        logits = model(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"])
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
    assert list(logs.rglob("events.out.tfevents.*"))  # TensorBoard logs


def _greedy_by_full_passes(model, params, constrained):
    """Reference decoding: one full forward pass over the weights and all tokens so far per token."""
    features = torch.from_numpy(weights.features(params, model.config.weight_tokens)[: model.config.max_chunks])[None]
    ids, grammar = [vocab.BOS_ID], vocab.Grammar()
    while len(ids) < MAX_PROGRAM_TOKENS and ids[-1] != vocab.EOS_ID:
        program = torch.tensor([ids])
        with torch.no_grad():
            logits = model(features, torch.ones(features.shape[:2]), program, torch.ones_like(program))[0, -1]
        if constrained:
            logits[[i for i in range(len(logits)) if i not in grammar.allowed()]] = float("-inf")
        ids.append(int(logits.argmax()))
        if constrained:
            grammar.step(ids[-1])
    return ids[1:]


@pytest.mark.parametrize("decoder", ["autoregressive", "slots"])
def test_batched_cached_decoding_picks_what_full_passes_pick(zoo32, overfit, decoder):
    # The trained model (autoregressive) makes the comparison meaningful; slots, untrained, checks
    # that one pass over blank slots and a batch of unequal weight lengths change nothing.
    model = overfit[0] if decoder == "autoregressive" else MetaModel(MetaConfig(preset="tiny", max_chunks=128, decoder="slots")).eval()
    samples = list(read_samples(str(zoo32 / "z/standard/shard-000000.tar")))[:12]
    assert len({len(weights.features(s.params, model.config.weight_tokens)) for s in samples}) > 1  # padding happens
    for constrained in (True, False):
        batched = model.generate([s.params for s in samples], constrained)
        assert batched == [_greedy_by_full_passes(model, s.params, constrained) for s in samples]
    if decoder == "autoregressive":
        assert sum(ids == vocab.encode(s.program)[1:] for ids, s in zip(batched, samples)) >= 8


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_a_stopped_run_resumes_to_the_same_parameters(small_zoo, tmp_path, precision):
    base = TrainConfig(store=str(small_zoo), zoo="small", split=None, steps=8, batch_size=4, warmup=2, checkpoint_every=4, shuffle_buffer=8,
                       mixed_precision=precision, model=MetaConfig(preset="tiny", max_chunks=128, dropout=0.1, input_noise=0.05, input_dropout=0.1))
    whole, pieces = f"whole-{precision}", f"pieces-{precision}"
    train(dataclasses.replace(base, run=whole), logdir=str(tmp_path / "a"), progress=False)
    stopped = train(dataclasses.replace(base, run=pieces), stop_after=4, logdir=str(tmp_path / "b"), progress=False)
    assert stopped["step"] == 4
    train(dataclasses.replace(base, run=pieces), logdir=str(tmp_path / "b"), progress=False)
    expected, resumed = (load_model(str(small_zoo), "small", run).state_dict() for run in (whole, pieces))
    for name, a in expected.items():
        assert torch.equal(a, resumed[name]), name
    with pytest.raises(TrainError, match=r"other settings \(lr=0\.\d+ \(asked 1\.0\)\)"):
        train(dataclasses.replace(base, run=pieces, lr=1.0), progress=False)
    with pytest.raises(TrainError, match=r"\(model\.weight_tokens='neurons' \(asked 'chunks'\)\)"):  # nested settings by name
        train(dataclasses.replace(base, run=pieces, model=dataclasses.replace(base.model, weight_tokens="chunks")), progress=False)


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


def test_the_cli_lists_presets_and_their_learning_rates_without_importing_torch():
    code = ("import sys, inverse_tracr.cli as cli\n"
            "try:\n    cli.build_parser().parse_args(['train', '--help'])\n"
            "except SystemExit:\n    print(sorted({'torch', 'jax'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    help_text, imported = result.stdout.rstrip().rsplit("\n", 1)
    assert imported == "[]"  # --help stays fast
    for name, preset in PRESETS.items():
        assert f"{name} {preset.lr:g}" in " ".join(help_text.split())


def test_the_learning_rate_is_the_preset_s_unless_given():
    assert TrainConfig(store="s", zoo="z", model=MetaConfig(preset="small")).lr == PRESETS["small"].lr == 2e-3
    assert TrainConfig(store="s", zoo="z", model=MetaConfig(preset="small"), lr=1e-4).lr == 1e-4
    assert plan(load_values(None, "demo")).train.lr == PRESETS["tiny"].lr


def test_prefix_attention_lets_weight_chunks_see_each_other_and_keeps_programs_causal():
    torch.manual_seed(0)
    model = MetaModel(MetaConfig(preset="tiny", max_chunks=16, attention="prefix")).eval()
    valid = torch.tensor([[1, 1, 1, 0, 1, 1, 1.0]])  # three chunks, one padded, three program positions
    allowed = model.attention_mask(valid, n_weights=4)[0, 0] == 0
    assert allowed[0, 2] and not allowed[0, 3] and not allowed[0, 4]  # a chunk sees later chunks, not padding or programs
    assert allowed[5].tolist() == [True, True, True, False, True, True, False]  # a program position: causal
    causal = MetaModel(MetaConfig(preset="tiny", max_chunks=16, attention="causal"))
    assert causal.attention_mask(valid, 4).tolist() == valid.long().tolist()
    # what the first chunk's state depends on: under prefix attention, a later chunk
    features = torch.randn(1, 3, weights.width(model.config.weight_tokens))
    program = torch.tensor([[vocab.BOS_ID, vocab.INDEX["Map"]]])
    with torch.no_grad():
        hidden = lambda f: model.backbone(inputs_embeds=torch.cat([model._embed_weights(f), model.program_in(program)], 1),  # noqa: E731
                                          attention_mask=model.attention_mask(torch.ones(1, 5), 3)).last_hidden_state[0, 0]
        changed = features.clone()
        changed[0, 2, :10] += 3.0
        assert (hidden(features) - hidden(changed)).abs().max() > 1e-4


def test_a_loader_worker_prints_real_errors_but_not_a_handover_the_trainer_abandoned(capsys, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    quiet_handover(0)
    for error in (ConnectionResetError(104, "Connection reset by peer"), EOFError(), ValueError("a real error")):
        try:
            raise error
        except Exception:  # noqa: BLE001 - as multiprocessing.resource_sharer reports its thread's errors
            sys.excepthook(*sys.exc_info())
    printed = capsys.readouterr().err
    assert "ValueError: a real error" in printed
    assert "ConnectionResetError" not in printed and "EOFError" not in printed
