"""An evaluation report as a person reads it: Markdown tables, PNG plots, a terminal table."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from inverse_tracr.evaluate.metrics import BUCKETS  # noqa: E402

#: The source's figures (thesis, standard zoo, programs of length 15) for the bucket table.
THESIS = {"token_accuracy": 0.7304, ">=100%": 0.004, ">=90%": 0.1327, ">=80%": 0.3261, ">=70%": 0.5841, ">=60%": 0.811, ">=50%": 0.954}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def bucket_table(report: dict[str, Any]) -> list[list[str]]:
    """Rows: decoding, token accuracy, then the share of programs in each bucket (thesis layout)."""
    header = ["decoding", "tokens %", "non-NA %", "lines %", *(f"≥{b}%" for b in reversed(BUCKETS)), "exact %", "functional %"]
    rows = [header]
    for decoding, summary in report["decodings"].items():
        if not summary.get("programs"):
            continue
        rows.append([
            decoding,
            _pct(summary["token_accuracy"]),
            _pct(summary["token_accuracy_non_na"]),
            _pct(summary["token_accuracy_lines"]),
            *(_pct(summary["buckets"][f">={b}%"]) for b in reversed(BUCKETS)),
            _pct(summary["exact"]),
            _pct(summary["functional"]),
        ])
    rows.append(["thesis (15 ops)", _pct(THESIS["token_accuracy"]), "-", "-", *(_pct(THESIS[f">={b}%"]) for b in reversed(BUCKETS)), "-", "-"])
    return rows


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths))) for row in rows)


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    out = [
        f"# Evaluation of run `{config['run']}` on `{config['zoo']}` ({config['kind']}, split {config['split']})",
        "",
        f"{report['programs']} programs. Token accuracy counts every target token (op, two arguments, the function's "
        "table entries or NA, the variable; an EOL closing each sublayer; and EOS); non-NA leaves out positions whose "
        "target is NA, lines leaves out EOL and EOS (the figure that compares target layouts). Buckets: share "
        "of programs with at least that share of their tokens right. Exact: the same canonical program. Functional: the "
        "predicted program gives the true program's outputs on every input up to the model's length.",
        "",
        "## Accuracy buckets",
        "",
        _markdown(bucket_table(report)),
    ]
    for decoding, summary in report["decodings"].items():
        if not summary.get("programs"):
            continue
        out += ["", f"## {decoding}: accuracy per field", ""]
        out.append(_markdown([["field", "accuracy %"], *([k, _pct(v)] for k, v in summary["by_field"].items())]))
        out += ["", f"## {decoding}: by program length", ""]
        out.append(_markdown([["lines", "programs", "tokens %", "exact %", "functional %"],
                              *([k, str(v["programs"]), _pct(v["token_accuracy"]), _pct(v["exact"]), _pct(v["functional"])]
                                for k, v in summary["by_length"].items())]))
    if report.get("search"):
        found = report["search"]
        out += ["", "## Meta-model: greedy vs checked search", "",
                "Each candidate (greedy, beam search, repairs) is run against the model on every input; *verified*: the "
                "chosen one agrees wherever it defines an output (greedy: it agrees on every output) — a compressed "
                "student's only when, compiled again, it folds into the student's weights, a natural student's never. "
                "The exact reader's answers are not counted here.", ""]
        rows = [["decoding", "verified %", "exact %", "functional %", "seconds / program"]]
        if "autoregressive" in report["decodings"]:
            greedy = report["decodings"]["autoregressive"]
            rows.append(["greedy", _pct(found["greedy_agrees_fully"]), _pct(greedy["exact"]), _pct(greedy["functional"]), ""])
        rows.append(["search", _pct(found["verified"]), _pct(found["exact"]), _pct(found["functional"]), f"{found['seconds_per_program']:.2f}"])
        out.append(_markdown(rows))
        out.append(f"\nVerified but not functionally equivalent (must be 0): {found['false_verified']}.")
    if report.get("reader"):
        read = report["reader"]
        out += ["", "## Exact reader (the weights read directly; not a meta-model figure)", "",
                _markdown([["read %", "exact %", "functional %", "wrong (unflagged)", "recompiled identical (a student: folds into its weights) %", "seconds / program"],
                           [_pct(read["read"]), _pct(read["exact"]), _pct(read["functional"]), str(read["wrong"]),
                            _pct(read["identical_weights"]), f"{read['seconds_per_program']:.3f}"]])]
    if report.get("lib"):
        out += ["", "## Tracr's hand-written `lib` programs (out of distribution)", ""]
        # Searched and read where the evaluation searched and read: each answer apart, as for the zoo.
        answers = [a for a in ("search", "reader") if a in report["lib"][0]]
        yes = lambda flag: "yes" if flag else "no"  # noqa: E731
        out.append(_markdown([["program", "lines", "tokens %", "exact", "functional", *(f"{a}: verified / exact" for a in answers), "predicted (greedy)"],
                              *([r["name"], str(r["lines"]), _pct(r["token_accuracy"]), yes(r["exact"]), yes(r["functional"]),
                                 *(f"{yes(r[a]['verified'])} / {yes(r[a]['exact'])}" for a in answers), r["predicted"].replace("\n", "; ")]
                                for r in report["lib"])]))
    out += ["", "## Plots", "", "![buckets](buckets.png)", "", "![op confusion](confusion.png)", ""]
    if report.get("history"):
        out += ["![learning curve](learning_curve.png)", ""]
    return "\n".join(out)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def plots(report: dict[str, Any]) -> dict[str, bytes]:
    """PNG files: bucket bars, op confusion heatmap, learning curve (when there is a history)."""
    files = {}
    figure, ax = plt.subplots(figsize=(7, 3.5))
    decodings = [(d, s) for d, s in report["decodings"].items() if s.get("programs")]
    width = 0.8 / (len(decodings) + 1)
    labels = [f"≥{b}%" for b in reversed(BUCKETS)]
    for i, (name, summary) in enumerate(decodings):
        ax.bar([x + i * width for x in range(len(labels))], [summary["buckets"][f">={b}%"] for b in reversed(BUCKETS)], width, label=name)
    ax.bar([x + len(decodings) * width for x in range(len(labels))], [THESIS[f">={b}%"] for b in reversed(BUCKETS)], width, label="thesis (15 ops)", color="lightgrey")
    ax.set_xticks([x + width * len(decodings) / 2 for x in range(len(labels))], labels)
    ax.set_ylabel("share of programs")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Programs with at least this share of tokens right")
    files["buckets.png"] = _png(figure)

    summary = decodings[-1][1] if decodings else {"op_confusion": {}}
    table = summary["op_confusion"]
    rows = sorted(table)
    columns = sorted({c for row in table.values() for c in row})
    figure, ax = plt.subplots(figsize=(1 + 0.9 * max(len(columns), 1), 1 + 0.6 * max(len(rows), 1)))
    matrix = [[table[r].get(c, 0) for c in columns] for r in rows] or [[0]]
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted op")
    ax.set_ylabel("true op")
    ax.set_title(f"Op confusion ({decodings[-1][0] if decodings else 'none'})")
    files["confusion.png"] = _png(figure)

    if report.get("history"):
        steps = [h["step"] for h in report["history"]]
        figure, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(steps, [h["loss"] for h in report["history"]], label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        twin = ax.twinx()
        twin.plot(steps, [h["token_accuracy"] for h in report["history"]], color="tab:orange", label="token accuracy")
        twin.set_ylabel("training token accuracy")
        twin.set_ylim(0, 1)
        ax.set_title("Learning curve")
        files["learning_curve.png"] = _png(figure)
    return files
