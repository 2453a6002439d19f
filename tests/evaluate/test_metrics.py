"""Evaluation metrics on hand-made predictions."""

from __future__ import annotations

import pytest

from inverse_tracr.evaluate import metrics
from inverse_tracr.meta import vocab
from inverse_tracr.programs import Program

TRUE = Program((
    ("Map", "lt_3", "tokens", "NA", "v1"),
    ("Select", "EQ", "indices", "indices", "v2"),
    ("Aggregate", "NA", "v2", "v1", "v3"),
))
INPUTS = [[0, 1, 2, 3, 4], [4, 4, 1], [2], [3, 0, 4, 1]]


def _ids(program: Program) -> list[int]:
    return metrics.targets(program)


def test_a_perfect_prediction_scores_full_marks():
    scored = metrics.score("k", TRUE, _ids(TRUE), INPUTS)
    assert scored.accuracy == 1 and scored.exact and scored.functional and scored.valid
    summary = metrics.summarise([scored])
    assert summary["token_accuracy"] == summary["token_accuracy_non_na"] == summary["token_accuracy_lines"] == 1
    assert all(share == 1 for share in summary["buckets"].values())


def test_equivalent_but_different_program_is_functional_not_exact():
    # Selecting the positions with the same token (instead of the same index) averages equal values
    # of v1 = f(token): the same function, other weights.
    other = Program((TRUE.lines[0], ("Select", "EQ", "tokens", "tokens", "v2"), TRUE.lines[2]))
    scored = metrics.score("k", TRUE, _ids(other), INPUTS)
    assert not scored.exact and scored.functional and scored.valid
    assert scored.hits.count(False) == 2 and scored.accuracy == pytest.approx(46 / 48)  # EQ's table is the same
    wrong = Program((("Map", "lt_2", "tokens", "NA", "v1"), *TRUE.lines[1:]))
    assert not metrics.score("k", TRUE, _ids(wrong), INPUTS).functional
    # x < 3 and x <= 2 are one table on integer tokens: one program, an exact match
    same = Program((("Map", "le_2", "tokens", "NA", "v1"), *TRUE.lines[1:]))
    assert metrics.score("k", TRUE, _ids(same), INPUTS).exact


def test_buckets_token_accuracies_and_truncated_predictions():
    # lines of op, arg1, arg2, the table's entries (5 for the Map, 5 x 5 for the Select) or NA, variable:
    # 9 + 29 + 5 tokens; 4 EOL (the Map in the first MLP, the Select and Aggregate in the second
    # attention, an empty MLP) + EOS: 48 tokens; the Map's arg2 and the Aggregate's function are NA
    target = _ids(TRUE)
    assert len(target) == 48 and target.count(metrics.NA_ID) == 2 and target.count(vocab.EOL_ID) == 4
    half = target[:24]  # stops early, inside the Select's table: the rest count as wrong
    scored = [
        metrics.score("a", TRUE, target, INPUTS),  # 100 %
        metrics.score("b", TRUE, half, INPUTS),  # 50 %
        metrics.score("c", TRUE, [vocab.PAD_ID] * 48, INPUTS),  # 0 %
    ]
    assert [s.accuracy for s in scored] == [1, 0.5, 0]
    summary = metrics.summarise(scored)
    assert summary["buckets"][">=100%"] == pytest.approx(1 / 3)
    assert summary["buckets"][">=50%"] == pytest.approx(2 / 3)
    assert summary["buckets"][">=60%"] == pytest.approx(1 / 3)
    assert summary["token_accuracy"] == pytest.approx((48 + 24) / 144)
    non_na_hits_b = sum(h for h, keep in zip(scored[1].hits, scored[1].non_na) if keep)
    assert summary["token_accuracy_non_na"] == pytest.approx((46 + non_na_hits_b) / 138)
    assert summary["token_accuracy_lines"] == pytest.approx((43 + 22) / 129)  # b: the Map's 9, the Select's first 13
    assert summary["exact"] == pytest.approx(1 / 3) and summary["valid"] == pytest.approx(1 / 3)
    assert summary["op_confusion"]["Map"] == {"Map": 2, "<pad>": 1}
    assert summary["op_confusion"]["Aggregate"] == {"Aggregate": 1, "missing": 2}
    assert summary["by_field"]["fn"] == pytest.approx((31 + 15) / 93) and summary["by_field"]["ends"] == pytest.approx((5 + 2) / 15)
    assert summary["by_field"]["op"] == pytest.approx(5 / 9)
