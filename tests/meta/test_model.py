"""The meta-model: batched cached decoding picks what full passes pick (slots: in one pass); prefix attention over the weights;
program positions that know which table entry they predict."""

from __future__ import annotations

import torch
from transformers.activations import ACT2FN

from inverse_tracr.meta import vocab, weights
from inverse_tracr.meta.config import MetaConfig, TrainConfig
from inverse_tracr.meta.data import ENTRY_VALUES, collate, example
from inverse_tracr.meta.model import MAX_PROGRAM_TOKENS, Decoding, MetaModel
from inverse_tracr.zoo import read_samples


def _greedy_by_full_passes(model, params, constrained):
    """Reference decoding: one full forward pass over the weights and all tokens so far per token."""
    features = torch.from_numpy(weights.features(params, model.config.weight_tokens)[: model.config.max_chunks])[None]
    ids, grammar = [vocab.BOS_ID], vocab.Grammar(sublayers=weights.sublayers(params))
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


def test_batched_cached_decoding_picks_what_full_passes_pick(zoo32, overfit):
    model = overfit[0]  # trained: its picks are decided (an untrained model's are near-ties that float noise flips)
    samples = list(read_samples(str(zoo32 / "z/standard/shard-000000.tar")))[:12]
    assert len({len(weights.features(s.params, model.config.weight_tokens)) for s in samples}) > 1  # padding happens
    for constrained in (True, False):
        batched = model.generate([s.params for s in samples], constrained)
        assert batched == [_greedy_by_full_passes(model, s.params, constrained) for s in samples]
        # one model's weights alone pad nothing, and its later tokens run without a mask (a search's rows)
        assert [model.generate([s.params], constrained)[0] for s in samples[:3]] == batched[:3]
    assert sum(ids == vocab.encode(s.program)[1:] for ids, s in zip(batched, samples)) >= 8


def test_slots_decode_in_one_pass_what_each_model_alone_gives(zoo32):
    # Untrained, so the logits are compared (to float noise: ~1e-6 apart, where greedy picks of an
    # untrained model can be 1e-5 apart): one pass over blank slots, a batch of unequal weight lengths.
    torch.manual_seed(0)
    model = MetaModel(MetaConfig(preset="tiny", max_chunks=128, decoder="slots")).eval()
    samples = list(read_samples(str(zoo32 / "z/standard/shard-000000.tar")))[:12]
    state = Decoding(model, [s.params for s in samples])
    alone = []
    for s in samples:
        features = torch.from_numpy(weights.features(s.params, model.config.weight_tokens)[: model.config.max_chunks])[None]
        blank = torch.zeros(1, MAX_PROGRAM_TOKENS - 1, dtype=torch.long)
        with torch.no_grad():
            alone.append(model(features, torch.ones(features.shape[:2]), blank, torch.ones_like(blank))[0])
    for step in range(MAX_PROGRAM_TOKENS - 1):
        assert torch.allclose(state.logits, torch.stack([a[step] for a in alone]), atol=1e-5), step
        state.advance(torch.full((len(samples),), vocab.PAD_ID))  # slots read no tokens


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


def test_program_positions_embed_the_table_entry_they_predict(zoo32):
    torch.manual_seed(0)
    model = MetaModel(MetaConfig(preset="tiny", max_chunks=128)).eval()
    sample = next(s for s in read_samples(str(zoo32 / "z/standard/shard-000000.tar")) if any(line.op == "Map" for line in s.program.lines))
    batch = collate([example(sample, 128, model.config.weight_tokens)])
    first = int(torch.nonzero(batch["entries"][0, :, 0] < ENTRY_VALUES)[0])  # the position whose next token is the first entry
    assert vocab.TOKENS[int(batch["targets"][0, first])] in (vocab.NONE, *vocab.RANKS)  # an entry it predicts
    with torch.no_grad():
        given = model(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"], batch["entries"])
        read = model(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"])  # replayed from the tokens
        nowhere = model(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"], torch.full_like(batch["entries"], ENTRY_VALUES))
    torch.testing.assert_close(read, given)
    torch.testing.assert_close(nowhere[0, :first], given[0, :first])
    assert not torch.allclose(nowhere[0, first], given[0, first])


def test_a_run_recorded_before_entry_embeddings_builds_the_model_it_trained():
    config = TrainConfig(store="s", zoo="z")
    assert config.model.entries and MetaModel(config.model).entry_in is not None
    recorded = config.to_json()
    del recorded["model"]["entries"]
    old = TrainConfig.from_json(recorded).model
    assert not old.entries and MetaModel(old).entry_in is None


def test_the_fused_activation_computes_what_gpt2_s_own_did():
    """Runs trained with `gelu_new` load into today's model (`gelu_pytorch_tanh`) and compute the same."""
    torch.manual_seed(0)
    model = MetaModel(MetaConfig(preset="tiny", max_chunks=16)).eval()
    assert model.backbone.config.activation_function == "gelu_pytorch_tanh"
    x = torch.linspace(-8, 8, 10001)
    fused, own = model.backbone.h[0].mlp.act, ACT2FN["gelu_new"]
    torch.testing.assert_close(fused(x), own(x), rtol=0, atol=1e-6)
    assert (fused(x) - ACT2FN["gelu"](x)).abs().max() > 1e-4  # a different GELU would not pass
