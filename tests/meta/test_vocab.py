"""Program tokens that round-trip, a grammar that admits every true program and counts sublayers,
and clear verdicts on invalid sequences."""

from __future__ import annotations

import random

import pytest

from inverse_tracr.evaluate.metrics import output_labels
from inverse_tracr.meta import vocab
from inverse_tracr.programs import ProgramError, layers, library
from inverse_tracr.programs.sampler import SamplerConfig, sample_program
from inverse_tracr.programs.tracr_lib import tracr_lib_programs


def test_program_tokens_round_trip_and_the_grammar_admits_every_true_program():
    config = SamplerConfig(min_ops=2, max_ops=12, random_tables=0.3)
    programs = [sample_program(random.Random(seed), config) for seed in range(80)] + list(tracr_lib_programs().values())
    for program in programs:
        ids = vocab.encode(program)
        # table entries are positions in value sets: the model's own labels come back from its layout
        assert vocab.decode(ids, program.vocab, program.max_seq_len, output_labels(program)) == program
        assert ids.count(vocab.EOL_ID) == layers.count(program)
        for sublayers in (None, layers.count(program)):
            grammar = vocab.Grammar(program.vocab, program.max_seq_len, sublayers)
            for token in ids[1:]:
                assert token in grammar.allowed(), (program.source(), vocab.TOKENS[token])
                grammar.step(token)
            assert grammar.done
    assert sum(vocab.INDEX[vocab.TABLE] in vocab.encode(p) for p in programs) > 20


def test_a_grammar_told_the_sublayers_fills_exactly_that_many():
    program = tracr_lib_programs()["length"]  # SelectorWidth: an attention and an MLP, one layer
    ids = vocab.encode(program)
    assert ids.count(vocab.EOL_ID) == 2
    deeper = vocab.Grammar(program.vocab, program.max_seq_len, sublayers=4)
    for token in ids[1:-1]:
        deeper.step(token)
    assert vocab.EOS_ID not in deeper.allowed() and vocab.EOL_ID in deeper.allowed()
    for _ in range(2):  # the layer the weights have beyond the program, left empty: then only the end
        deeper.step(vocab.EOL_ID)
    assert deeper.allowed() == {vocab.EOS_ID}
    # Told one layer, a program cannot close its only MLP empty: it could never end.
    empty = vocab.Grammar(program.vocab, program.max_seq_len, sublayers=2)
    empty.step(vocab.EOL_ID)
    assert vocab.EOL_ID not in empty.allowed() and vocab.INDEX["Map"] in empty.allowed()


def test_the_grammar_offers_only_library_names_that_apply_and_are_canonical():
    offered = {}
    for labels in ((0, 1, 2, 3, 4), ("a", "b", "c")):
        grammar = vocab.Grammar(labels, 5)
        for token in (vocab.EOL, "Map", "tokens", "NA"):
            grammar.step(vocab.INDEX[token])
        offered[labels] = {vocab.TOKENS[i][1:] for i in grammar.allowed() if vocab.TOKENS[i].startswith("@")}
        operand = grammar.types["tokens"]
        for name in library.MAP_FNS:
            try:
                table = library.named_table("Map", name, [operand])
            except Exception:  # noqa: BLE001 - does not apply to these labels
                assert name not in offered[labels]
                continue
            # offered exactly when the canonical form would write this table with this name
            assert (name in offered[labels]) == (name in {library.alias("Map", table, [operand], r) for r in (False, True)}), name
    assert "lt_2" in offered[(0, 1, 2, 3, 4)] and "lt_2" not in offered[("a", "b", "c")]
    assert 0 < len(offered[("a", "b", "c")]) < len(offered[(0, 1, 2, 3, 4)]) < len(library.MAP_FNS)


@pytest.mark.parametrize("tokens, fragment", [
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", "@lt_3"], "end-of-program"),
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", "@lt_3", vocab.EOS], "cannot come here"),
    ([vocab.BOS, "Aggregate", "v1", "tokens", "NA", "v1", vocab.EOS], "cannot come here"),
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", vocab.TABLE, "#0", "#1", "v1", vocab.EOS], "cannot come here"),  # 5 entries due
    ([vocab.BOS, "Map", "tokens", "NA", "@lt_3", "v1", vocab.EOS], "cannot come here"),  # an MLP's op in an attention sublayer
    # v2 reads v1 in the sublayer that writes it
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", "@lt_3", "v1", "Map", "v1", "NA", "@lt_3", "v2", vocab.EOS], "cannot come here"),
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", "@lt_3", "v1", vocab.EOS], "cannot come here"),  # the MLP is not closed
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", "@lt_3", "v1", vocab.EOL, vocab.EOL, vocab.EOS], "cannot come here"),  # half a layer
])
def test_invalid_token_sequences_get_a_clear_verdict(tokens, fragment):
    with pytest.raises(ProgramError, match=fragment):
        vocab.decode([vocab.INDEX[t] for t in tokens], (0, 1, 2, 3, 4), 5)
