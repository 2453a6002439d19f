"""Program tokens that round-trip, a grammar that admits every true program and counts sublayers,
and clear verdicts on invalid sequences."""

from __future__ import annotations

import itertools
import random

import pytest
from tracr.rasp import rasp

from inverse_tracr.evaluate.metrics import output_labels
from inverse_tracr.meta import vocab
from inverse_tracr.programs import Program, ProgramError, layers
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
        # every function is written entry by entry, library names too
        fn_tokens = sum(field == 3 for field in vocab.fields(ids[1:]))
        assert fn_tokens == sum(1 if line.fn is None else len(line.fn) for line in program.lines)
    assert sum(alias is not None for p in programs for alias in p.aliases) > 20


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
        for token in ("Select", "tokens", "tokens"):
            grammar.step(vocab.INDEX[token])
        while grammar.entry() is not None:
            grammar.step(vocab.INDEX["#1"])
        grammar.step(vocab.INDEX[vocab.VARIABLES[i]])
    assert grammar.allowed() == {vocab.INDEX[op] for op in ("Aggregate", "SelectorWidth", "NumericalSelectorWidth")}
    for token in ("SelectorWidth", "v1", "NA", "NA", vocab.VARIABLES[-1]):
        grammar.step(vocab.INDEX[token])
    assert grammar.allowed() == {vocab.EOL_ID}


def test_a_library_function_is_written_as_its_table_and_printed_by_its_name():
    program = Program.from_rasp(rasp.categorical(rasp.Map(lambda x: x < 3, rasp.tokens)), (0, 1, 2, 3, 4), 5)
    assert program.aliases == ("lt_3",)
    ids = vocab.encode(program)
    assert [vocab.TOKENS[t] for t in ids] == [vocab.BOS, vocab.EOL, "Map", "tokens", "NA", "#1", "#1", "#1", "#0", "#0", "v1", vocab.EOL, vocab.EOS]
    grammar = vocab.Grammar(program.vocab, program.max_seq_len)
    for token in ids[1:5]:
        grammar.step(token)
    assert grammar.allowed() == {vocab.INDEX[t] for t in (vocab.NONE, *vocab.RANKS)}  # an entry, never a name
    decoded = vocab.decode(ids, program.vocab, program.max_seq_len, output_labels(program))
    assert decoded == program and "lt_3" in decoded.source()


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
    cut = 1 + next(i for i, e in enumerate(vocab.entries(mapped, (0, 1, 2, 3), 5)) if e)  # the first entry's token
    broken = vocab.entries(mapped[:cut] + [vocab.INDEX["Map"]] + mapped[cut:], (0, 1, 2, 3), 5)
    assert not any(broken[cut:])


LT_3 = ("#1", "#1", "#1", "#0", "#0")  # x < 3 on 0..4, the output's values ranked (False, True)


@pytest.mark.parametrize("tokens, fragment", [
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", *LT_3], "end-of-program"),
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", *LT_3, vocab.EOS], "cannot come here"),
    ([vocab.BOS, "Aggregate", "v1", "tokens", "NA", "v1", vocab.EOS], "cannot come here"),
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", "#0", "#1", "v1", vocab.EOS], "cannot come here"),  # 5 entries due
    ([vocab.BOS, "Map", "tokens", "NA", *LT_3, "v1", vocab.EOS], "cannot come here"),  # an MLP's op in an attention sublayer
    # v2 reads v1 in the sublayer that writes it
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", *LT_3, "v1", "Map", "v1", "NA", *LT_3, "v2", vocab.EOS], "cannot come here"),
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", *LT_3, "v1", vocab.EOS], "cannot come here"),  # the MLP is not closed
    ([vocab.BOS, vocab.EOL, "Map", "tokens", "NA", *LT_3, "v1", vocab.EOL, vocab.EOL, vocab.EOS], "cannot come here"),  # half a layer
])
def test_invalid_token_sequences_get_a_clear_verdict(tokens, fragment):
    with pytest.raises(ProgramError, match=fragment):
        vocab.decode([vocab.INDEX[t] for t in tokens], (0, 1, 2, 3, 4), 5)
