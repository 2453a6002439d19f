"""Greedy decoding vs the checked search, on a held-out zoo: how much searching buys, and its cost.

For a trained run, decompiles every program of a held-out zoo (generated here if absent: 4–8 ops,
seed 777, which training never saw) with the meta-model only (`method="meta"`: the exact reader's
answers are never counted here), at several search settings, and prints per setting: verified %,
functional %, exact %, false verified (verified but not functionally equivalent: must be 0) and
seconds per program; the figures also go to a JSON file and a plot.

    python benchmarks/decompile.py --store ./zoo-store --zoo demo --run meta [--programs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from inverse_tracr.compile.check import Behaviour, inputs_for  # noqa: E402
from inverse_tracr.evaluate.metrics import functionally_equivalent  # noqa: E402
from inverse_tracr.meta.config import SearchConfig  # noqa: E402
from inverse_tracr.meta.decompile import decompile, model_from_sample  # noqa: E402
from inverse_tracr.meta.train import load_model  # noqa: E402
from inverse_tracr.zoo.generate import generate  # noqa: E402
from inverse_tracr.zoo.config import ZooConfig  # noqa: E402
from inverse_tracr.zoo.shards import Reader, shard_urls  # noqa: E402
from inverse_tracr.zoo.store import Store  # noqa: E402

SETTINGS = {  # name -> search settings, cheapest first
    "greedy": SearchConfig(beam=1, repair_rounds=0),
    "beam 2": SearchConfig(beam=2, repair_rounds=0),
    "beam 4": SearchConfig(beam=4, repair_rounds=0),
    "beam 8": SearchConfig(beam=8, repair_rounds=0),
    "beam 4 + repair": SearchConfig(beam=4, repair_rounds=1, repair_positions=4, fit=False),
    "beam 8 + 2 repairs": SearchConfig(beam=8, repair_rounds=2, repair_positions=4, fit=False),
    "beam 8 + 8 climbing repairs": SearchConfig(beam=8, repair_rounds=8, repair_positions=6, fit=False),
    "beam 8 + 8 rounds of fitting and repair (default)": SearchConfig(beam=8, repair_rounds=8, repair_positions=6),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="./zoo-store")
    parser.add_argument("--zoo", default="demo", help="the zoo the run was trained on")
    parser.add_argument("--run", default="meta")
    parser.add_argument("--held-out-store", default="/tmp/inverse-tracr-bench", help="where the held-out zoo lives (made if absent)")
    parser.add_argument("--programs", type=int, default=100, help="held-out programs")
    parser.add_argument("--budget-seconds", type=float, default=10.0)
    parser.add_argument("--out", default="decompile-benchmark", help="prefix of the .json and .png written")
    args = parser.parse_args()

    held_out = ZooConfig(shard_size=50, min_ops=4, max_ops=8, seed=777)
    generate(args.held_out_store, "decompile-held-out", held_out, programs=args.programs, workers=os.cpu_count() or 1, progress=False)
    samples = list(Reader(shard_urls(Store(args.held_out_store), "decompile-held-out")))[: args.programs]
    meta_model = load_model(args.store, args.zoo, args.run)
    prepared = []
    for sample in samples:
        model, threshold = model_from_sample(sample)
        prepared.append((sample, model, threshold, Behaviour.of(model), inputs_for(sample.program.vocab, sample.program.max_seq_len)[0]))

    figures = {}
    print(f"{len(samples)} held-out programs; run {args.zoo}/{args.run}; meta-model only (the exact reader is not used)")
    print(f"{'setting':22} {'verified':>8} {'functional':>10} {'exact':>6} {'false verified':>14} {'s/program':>9}")
    for name, setting in SETTINGS.items():
        setting = SearchConfig(**{**setting.__dict__, "budget_seconds": args.budget_seconds})
        verified = functional = exact = false = 0
        started = time.perf_counter()
        for sample, model, threshold, behaviour, inputs in prepared:
            found = decompile(model, meta_model, "meta", threshold, setting, behaviour)
            ok = found.program is not None and (found.program == sample.program or functionally_equivalent(sample.program, found.program, inputs))
            verified += found.evidence.verified
            functional += ok
            exact += found.program == sample.program
            false += found.evidence.verified and not ok
        n = len(prepared)
        figures[name] = {"verified": verified / n, "functional": functional / n, "exact": exact / n, "false_verified": false,
                         "seconds_per_program": (time.perf_counter() - started) / n}
        f = figures[name]
        print(f"{name:22} {100 * f['verified']:7.1f}% {100 * f['functional']:9.1f}% {100 * f['exact']:5.1f}% {false:14d} {f['seconds_per_program']:9.2f}")
    with open(f"{args.out}.json", "w") as out:
        json.dump({"run": f"{args.zoo}/{args.run}", "programs": len(samples), "settings": figures}, out, indent=1)
    figure, axis = plt.subplots(figsize=(6, 4))
    seconds = [f["seconds_per_program"] for f in figures.values()]
    for key, label in (("functional", "functional"), ("exact", "exact"), ("verified", "verified")):
        axis.plot(seconds, [100 * f[key] for f in figures.values()], marker="o", label=label)
    for name, x, f in zip(figures, seconds, figures.values()):
        axis.annotate(name, (x, 100 * f["functional"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("seconds per program (2 cores)")
    axis.set_ylabel("% of held-out programs")
    axis.set_title(f"Checked search vs greedy, run {args.zoo}/{args.run}")
    axis.legend()
    figure.savefig(f"{args.out}.png", dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
