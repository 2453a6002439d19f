"""Program tokens that round-trip, a grammar that admits every true program and counts sublayers,
and clear verdicts on invalid sequences."""

from __future__ import annotations

import itertools
import random

import pytest
from tracr.rasp import rasp

from inverse_tracr.evaluate.metrics import output_labels
from inverse_tracr.meta import vocab
from inverse_tracr.programs import Program, ProgramError, layers, library
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


def test_a_grammar_never_leaves_a_decoder_without_a_next_token():
    # Selects up to the last variable but one: the last must be the attention that uses one, and
    # then the sublayer can close (a Select there instead was a dead end a decoder reached on lib).
    grammar = vocab.Grammar(sublayers=2)
    for i in range(vocab.MAX_VARIABLES - 1):
        assert vocab.INDEX["Select"] in grammar.allowed()
        for token in ("Select", "tokens", "tokens", "@EQ", vocab.VARIABLES[i]):
            grammar.step(vocab.INDEX[token])
    assert grammar.allowed() == {vocab.INDEX[op] for op in ("Aggregate", "SelectorWidth", "NumericalSelectorWidth")}
    for token in ("SelectorWidth", "v1", "NA", "NA", vocab.VARIABLES[-1]):
        grammar.step(vocab.INDEX[token])
    assert grammar.allowed() == {vocab.EOL_ID}


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


def test_each_table_entry_knows_the_operand_values_it_is_the_entry_of():
    keys, queries = rasp.tokens, rasp.indices  # 4 and 5 values: the two orders differ
    predicate = lambda k, q: k + 3 > 2 * q  # noqa: E731 - a table no library name has
    program = Program.from_rasp(rasp.SelectorWidth(rasp.Select(keys, queries, predicate)), (0, 1, 2, 3), 5)
    ids = vocab.encode(program)
    entries = vocab.entries(ids, program.vocab, program.max_seq_len)
    assert len(entries) == len(ids)
    select = program.lines[[line.op for line in program.lines].index("Select")]
    key_values, query_values = (program.types[name].values for name in select.operands)
    table = [(entry, vocab.TOKENS[token]) for entry, token in zip(entries, ids[1:]) if entry is not None]
    assert [entry for entry, _ in table] == list(itertools.product(range(len(key_values)), range(len(query_values))))
    assert all((token == "#1") == predicate(key_values[k], query_values[q]) for (k, q), token in table)
    assert {token for _, token in table} == {"#0", "#1"}
    # a table of one operand: the second is none; no entries elsewhere, and none after a token the grammar refuses
    mapped = vocab.encode(Program.from_rasp(rasp.categorical(rasp.Map(lambda x: (3 * x) % 4, rasp.tokens)), (0, 1, 2, 3), 5))
    assert [e for e in vocab.entries(mapped, (0, 1, 2, 3), 5) if e] == [(x, None) for x in range(4)]
    cut = mapped.index(vocab.INDEX[vocab.TABLE])
    broken = vocab.entries(mapped[:cut] + [vocab.INDEX["Map"]] + mapped[cut:], (0, 1, 2, 3), 5)
    assert not any(broken[cut:])


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
