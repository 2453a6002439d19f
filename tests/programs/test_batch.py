"""The batched evaluator gives what rasp.evaluate gives, also where an Aggregate averages."""

from __future__ import annotations

import collections
import math
import random

import pytest
from tracr.rasp import rasp

from inverse_tracr.compile.verify import all_inputs
from inverse_tracr.programs import Program
from inverse_tracr.programs.batch import OUTSIDE, decode, evaluate_batch, evaluate_many
from inverse_tracr.programs.sampler import SamplerConfig, sample_program

AVERAGE = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ), rasp.tokens))
NUMBERS, LETTERS = tuple(range(5)), ("a", "b", "c")


@pytest.mark.parametrize("sop, vocab, share_left", [
    (AVERAGE, NUMBERS, 0.0),
    (rasp.categorical(rasp.Map(lambda x: x % 3, AVERAGE)), NUMBERS, 0.0),
    (rasp.categorical(rasp.SelectorWidth(rasp.Select(AVERAGE, rasp.tokens, rasp.Comparison.LT))), NUMBERS, 0.0),
    (rasp.categorical(rasp.SequenceMap(lambda x, i: x + i, AVERAGE, rasp.indices)), NUMBERS, 0.0),
    (rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), AVERAGE)), NUMBERS, 1.0),
    (AVERAGE, LETTERS, 0.0),
], ids=["output", "map", "select", "sequence_map", "mean_of_means", "letters"])
def test_where_values_are_averaged_the_batch_says_what_rasp_says(sop, vocab, share_left):
    # rasp.evaluate averages several selected numbers (the mean of 1 and 3 is 2.0, which every
    # table looks up as 2; a table raises on 1.5) and raises on letters: checking candidates that
    # average on Tracr's sort went input by input through rasp.evaluate, 0.5 s a candidate. Only a
    # mean of means (whose numbers the batch does not keep) is left to rasp.evaluate.
    program = Program.from_rasp(sop, vocab, 4)
    output = program.types[program.output]
    inputs = all_inputs(vocab, 4)
    left_to_rasp = 0
    batch = evaluate_batch(program, inputs)
    rows = decode(batch, output)
    for r, i in enumerate(batch.rows):
        if batch.irregular[r]:
            left_to_rasp += 1
            continue
        try:
            expected = rasp.evaluate(program.to_rasp(), inputs[i])
        except ValueError:
            expected = "raises"
        if batch.raises[r]:
            assert expected == "raises", inputs[i]
        else:  # where the output holds a mean that is none of the values, rasp's is none of them
            outside = batch.output[r] == OUTSIDE
            assert len(rows[r]) == len(expected), inputs[i]
            assert all(w not in output.values if o else w == v for v, w, o in zip(rows[r], expected, outside)), inputs[i]
    # Tracr's attention cannot average: screening still marks every input where values are averaged.
    averaged = int(evaluate_batch(program, inputs, mean=False).irregular.sum())
    assert averaged > 100 and left_to_rasp <= share_left * averaged


def test_inputs_of_every_length_in_one_batch_give_what_rasp_gives():
    # The batch pads shorter inputs to the longest; SelectorWidth and a numerical Aggregate give a
    # value where nothing is selected, so past an input's end they must be cleared, or a Select
    # that reads them selects keys the input does not have, and a check compares positions that
    # are not there.
    config = SamplerConfig(min_ops=3, max_ops=9, vocab_size=4, max_seq_len=5)
    rng = random.Random(0)
    checked = collections.Counter()
    for seed in range(40):
        program = sample_program(random.Random(seed), config)
        inputs = rng.sample(all_inputs(program.vocab, program.max_seq_len), 150)
        batch = evaluate_batch(program, inputs)  # nothing defined past an input's end: it would be compared
        assert not (batch.defined & ~batch.present).any() and batch.present.sum() == sum(map(len, inputs))
        for xs, got in zip(inputs, evaluate_many(program, inputs)):
            want = rasp.evaluate(program.to_rasp(), xs)
            assert len(got) == len(want) and all(
                g == w if g is None or w is None or isinstance(w, str) else math.isclose(g, w, abs_tol=1e-9) for g, w in zip(got, want)), (program, xs)
        checked.update(line.op for line in program.lines)
    assert checked["SelectorWidth"] >= 5 and checked["Aggregate"] >= 10, checked
