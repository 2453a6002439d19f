"""Program tokens that round-trip, a grammar that admits every true program, and clear verdicts on invalid sequences."""

from __future__ import annotations

import random

import pytest

from inverse_tracr.evaluate.metrics import output_labels
from inverse_tracr.meta import vocab
from inverse_tracr.programs import ProgramError
from inverse_tracr.programs.sampler import SamplerConfig, sample_program
from inverse_tracr.programs.tracr_lib import tracr_lib_programs


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
