"""Evaluation: metric functions on hand-made predictions, and the evaluate stage's report."""

from __future__ import annotations

import json

import pytest

from inverse_tracr.evaluate import metrics
from inverse_tracr.meta import vocab
from inverse_tracr.programs import Program
from inverse_tracr.zoo import read_samples

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
    assert summary["token_accuracy"] == summary["token_accuracy_non_na"] == 1
    assert all(share == 1 for share in summary["buckets"].values())


def test_equivalent_but_different_program_is_functional_not_exact():
    # Selecting the positions with the same token (instead of the same index) averages equal values
    # of v1 = f(token): the same function, other weights.
    other = Program((TRUE.lines[0], ("Select", "EQ", "tokens", "tokens", "v2"), TRUE.lines[2]))
    scored = metrics.score("k", TRUE, _ids(other), INPUTS)
    assert not scored.exact and scored.functional and scored.valid
    assert scored.hits.count(False) == 2 and scored.accuracy == pytest.approx(14 / 16)
    wrong = Program((("Map", "lt_2", "tokens", "NA", "v1"), *TRUE.lines[1:]))
    assert not metrics.score("k", TRUE, _ids(wrong), INPUTS).functional
    # x < 3 and x <= 2 are one table on integer tokens: one program, an exact match
    same = Program((("Map", "le_2", "tokens", "NA", "v1"), *TRUE.lines[1:]))
    assert metrics.score("k", TRUE, _ids(same), INPUTS).exact


def test_buckets_token_accuracies_and_truncated_predictions():
    target = _ids(TRUE)  # 3 lines x 5 (op, arg1, arg2, alias or NA, variable) + EOS = 16 tokens; Map and Aggregate have one NA each
    assert len(target) == 16 and target.count(metrics.NA_ID) == 2
    half = target[:8]  # stops early: the rest count as wrong
    scored = [
        metrics.score("a", TRUE, target, INPUTS),  # 100 %
        metrics.score("b", TRUE, half, INPUTS),  # 50 %
        metrics.score("c", TRUE, [vocab.PAD_ID] * 16, INPUTS),  # 0 %
    ]
    assert [s.accuracy for s in scored] == [1, 0.5, 0]
    summary = metrics.summarise(scored)
    assert summary["buckets"][">=100%"] == pytest.approx(1 / 3)
    assert summary["buckets"][">=50%"] == pytest.approx(2 / 3)
    assert summary["buckets"][">=60%"] == pytest.approx(1 / 3)
    assert summary["token_accuracy"] == pytest.approx((16 + 8) / 48)
    non_na_hits_b = sum(h for h, keep in zip(scored[1].hits, scored[1].non_na) if keep)
    assert summary["token_accuracy_non_na"] == pytest.approx((14 + non_na_hits_b) / 42)
    assert summary["exact"] == pytest.approx(1 / 3) and summary["valid"] == pytest.approx(1 / 3)
    assert summary["op_confusion"]["Map"] == {"Map": 2, "<pad>": 1}
    assert summary["op_confusion"]["Aggregate"] == {"Aggregate": 1, "missing": 2}
    assert summary["by_field"]["fn"] == pytest.approx(4 / 9) and summary["by_field"]["eos"] == pytest.approx(1 / 3)
    assert summary["by_field"]["op"] == pytest.approx(5 / 9)


def test_evaluate_writes_a_report_with_tables_and_png_plots(small_zoo, tmp_path):
    from inverse_tracr.evaluate.run import EvalConfig, evaluate
    from inverse_tracr.meta.model import MetaConfig
    from inverse_tracr.meta.train import TrainConfig, train

    train(TrainConfig(store=str(small_zoo), zoo="small", run="ev", split=None, steps=20, batch_size=6, lr=3e-3, warmup=2,
                      log_every=5, checkpoint_every=20, shuffle_buffer=0, model=MetaConfig(preset="tiny", max_chunks=128)),
          logdir=str(tmp_path), progress=False)
    result = evaluate(EvalConfig(store=str(small_zoo), zoo="small", run="ev", split="all", inputs=16), progress=False)
    folder = small_zoo / "small/meta/ev/eval/standard-all"
    saved = json.loads((folder / "report.json").read_text())
    assert saved["programs"] == 12 and set(saved["decodings"]) == {"teacher_forced", "autoregressive"}
    for summary in saved["decodings"].values():
        assert 0 <= summary["token_accuracy"] <= 1 and set(summary["buckets"]) == {f">={b}%" for b in metrics.BUCKETS}
    assert [h["step"] for h in saved["history"]] == [5, 10, 15, 20]
    assert len(saved["lib"]) == 13 and {r["name"] for r in saved["lib"]} >= {"hist", "length", "shuffle_dyck2", "shift_by"}
    # The exact reader reads every standard model; its figures are kept apart from the meta-model's.
    assert saved["reader"]["read"] == saved["reader"]["exact"] == 1 and saved["reader"]["wrong"] == 0
    assert saved["search"]["programs"] == 12 and saved["search"]["false_verified"] == 0
    assert 0 <= saved["search"]["functional"] <= 1 and saved["search"]["seconds_per_program"] > 0
    lines = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    samples = {s.key: s for s in read_samples(str(small_zoo / "small/standard/shard-{000000..000001}.tar"))}
    assert sorted(line["key"] for line in lines) == sorted(samples)
    for line in lines:  # every prediction round-trips, and its verdicts are the recorded ones
        true = Program.from_json(line["true"])
        assert true == samples[line["key"]].program
        assert Program.from_json(line["reader"]["program"]) == true and line["reader"]["verified"]
        found = line["search"]
        if found["program"] is not None:
            assert (Program.from_json(found["program"]) == true) == found["exact"]
        assert found["verified"] <= found["functional"]  # a verified answer is never wrong
    text_ = (folder / "report.md").read_text()
    assert "greedy vs checked search" in text_ and "Exact reader" in text_
    text = (folder / "report.md").read_text()
    assert "## Accuracy buckets" in text and "thesis (15 ops)" in text and "lib" in text
    for name in ("buckets.png", "confusion.png", "learning_curve.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["location"].endswith("eval/standard-all")
