"""The evaluate stage: the report it writes to the store, with tables, PNG plots and predictions."""

from __future__ import annotations

import json

import pytest

from inverse_tracr.evaluate import metrics
from inverse_tracr.programs import Program
from inverse_tracr.zoo import read_samples


def test_evaluate_writes_a_report_with_tables_and_png_plots(small_zoo, tmp_path):
    from inverse_tracr.evaluate.config import EvalConfig
    from inverse_tracr.evaluate.run import evaluate
    from inverse_tracr.meta.config import MetaConfig, SearchConfig, TrainConfig
    from inverse_tracr.meta.train import train

    train(TrainConfig(store=str(small_zoo), zoo="small", run="ev", split=None, steps=20, batch_size=6, lr=3e-3, warmup=2,
                      log_every=5, checkpoint_every=20, shuffle_buffer=0, model=MetaConfig(preset="tiny", max_chunks=128)),
          logdir=str(tmp_path), progress=False)
    # a 20-step model verifies nothing, so every program would search to the budget: a short search
    search = SearchConfig(beam=4, repair_rounds=1, budget_seconds=1.0)
    result = evaluate(EvalConfig(store=str(small_zoo), zoo="small", run="ev", split="all", inputs=16, search=search), progress=False)
    folder = small_zoo / "small/meta/ev/eval/standard-all"
    saved = json.loads((folder / "report.json").read_text())
    assert saved["programs"] == 12 and set(saved["decodings"]) == {"teacher_forced", "autoregressive"}
    for summary in saved["decodings"].values():
        assert 0 <= summary["token_accuracy"] <= 1 and set(summary["buckets"]) == {f">={b}%" for b in metrics.BUCKETS}
    assert [h["step"] for h in saved["history"]] == [5, 10, 15, 20]
    assert len(saved["lib"]) == 13 and {r["name"] for r in saved["lib"]} >= {"hist", "length", "shuffle_dyck2", "shift_by"}
    # lib programs are searched and read like the zoo's: the reader reads all 13 back, a search is never wrongly verified
    assert all(r["reader"]["exact"] and r["reader"]["verified"] for r in saved["lib"])
    assert all(r["search"]["verified"] <= r["search"]["functional"] and r["search"]["seconds"] > 0 for r in saved["lib"])
    # The exact reader reads every standard model; its figures are kept apart from the meta-model's.
    assert saved["reader"]["read"] == saved["reader"]["exact"] == 1 and saved["reader"]["wrong"] == 0
    assert saved["search"]["programs"] == 12 and saved["search"]["false_verified"] == 0
    lines = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    for verdict in ("verified", "exact", "functional", "seconds"):  # the report's rates are those of the predictions
        rate = saved["search"]["seconds_per_program" if verdict == "seconds" else verdict]
        assert rate == pytest.approx(sum(line["search"][verdict] for line in lines) / 12)
    greedy = sum(line["greedy"] is not None and Program.from_json(line["greedy"]) == Program.from_json(line["true"]) for line in lines)
    assert saved["decodings"]["autoregressive"]["exact"] == pytest.approx(greedy / 12)
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
    assert "| search: verified / exact | reader: verified / exact |" in text_ and "| yes / yes |" in text_
    text = (folder / "report.md").read_text()
    assert "## Accuracy buckets" in text and "thesis (15 ops)" in text and "lib" in text
    for name in ("buckets.png", "confusion.png", "learning_curve.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["location"].endswith("eval/standard-all")


def test_reports_on_a_held_out_zoo_keep_its_kinds_apart():
    from inverse_tracr.evaluate.config import EvalConfig
    from inverse_tracr.evaluate.run import report_location

    where = {kind: report_location(EvalConfig(store="s", zoo="z", run="r", split="all", data="/data/held-out", kind=kind))
             for kind in ("standard", "compressed")}
    # once one name for both: evaluating the compressed students replaced the standard models' report
    assert where["standard"] != where["compressed"] and where["standard"][:4] == where["compressed"][:4] == ("z", "meta", "r", "eval")
    shards = {kind: report_location(EvalConfig(store="s", zoo="z", run="r", split="all", data="/data/held-out/standard/shard-000000.tar", kind=kind))
              for kind in ("standard", "compressed")}
    assert shards["standard"] == shards["compressed"]  # named shards are what they are, whatever --kind says
