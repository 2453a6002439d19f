"""The batched evaluator gives what rasp.evaluate gives, also where an Aggregate averages."""

from __future__ import annotations

import pytest
from tracr.rasp import rasp

from inverse_tracr.compile.verify import all_inputs
from inverse_tracr.programs import Program
from inverse_tracr.programs.batch import OUTSIDE, decode, evaluate_groups

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
    for group in evaluate_groups(program, inputs):
        rows = decode(group.output, output)
        for r, i in enumerate(group.rows):
            if group.irregular[r]:
                left_to_rasp += 1
                continue
            try:
                expected = rasp.evaluate(program.to_rasp(), inputs[i])
            except ValueError:
                expected = "raises"
            if group.raises[r]:
                assert expected == "raises", inputs[i]
            else:  # where the output holds a mean that is none of the values, rasp's is none of them
                outside = group.output[r] == OUTSIDE
                assert all(w not in output.values if o else w == v for v, w, o in zip(rows[r], expected, outside)), inputs[i]
    # Tracr's attention cannot average: screening still marks every input where values are averaged.
    averaged = sum(int(g.irregular.sum()) for g in evaluate_groups(program, inputs, mean=False))
    assert averaged > 100 and left_to_rasp <= share_left * averaged
