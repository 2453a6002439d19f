"""Train a meta-model on this machine's CPU for a fixed budget, evaluate it, and compare the data
loader's throughput with training's. Decoding a sample costs ~4 ms, which bounded training on 2
cores until decoded examples were kept for later epochs (`--cache-mb` of `train`): with them and no
loader process, 2,000 steps on 4,000 programs take 153 s instead of 248–277 s, at identical figures.

Make the zoos first (4,000 programs of 4–8 ops: ~6 min on 2 cores; 20,000: ~28 min; a held-out
zoo of another seed, ~25 s):

    inverse-tracr generate --store /tmp/bench-store --zoo ops4to8 --programs 4000
    inverse-tracr generate --store /tmp/held-out --zoo held-out --programs 300 --seed 5151

then train on the fixed budget (the defaults: batches of 8, 6,000 steps, ~4 CPU-minutes on 2 cores),
evaluated on the zoo's own validation split and on the held-out zoo:

    python benchmarks/meta_cpu.py --store /tmp/bench-store --zoo ops4to8 --held-out /tmp/held-out/held-out

Each run's figures go to `<store>/<zoo>/meta/<run>/bench.json`, with a learning curve: held-out
tokens (teacher-forced) and greedy exact matches at each of the run's five checkpoints. Compare runs
(a table, and a plot of those curves against programs seen, one line per recipe):

    python benchmarks/meta_cpu.py --store /tmp/bench-store --zoo ops4to8 --compare tiny-chunks tiny-neurons --plot curves.png

Bars to beat at full scale: the source's 73 % tokens / 0.4 % exact (15-op programs, GPU); a later
public work's 98.3 % tokens / 60 % exact (4–8 ops, 1.6 M pairs).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

from torch.utils.data import DataLoader

from inverse_tracr.evaluate import metrics, report
from inverse_tracr.evaluate.config import EvalConfig
from inverse_tracr.evaluate.run import decodings, evaluate, load_samples
from inverse_tracr.meta import checkpoint, vocab, weights
from inverse_tracr.meta.config import MetaConfig, SearchConfig, TrainConfig
from inverse_tracr.meta.data import by_size, stream
from inverse_tracr.meta.train import load_model, train, training_urls
from inverse_tracr.zoo.store import Store


#: The checked search of the figures: issue 13's budget of 2 s per program on 2 cores.
SEARCH = SearchConfig(beam=8, repair_rounds=8, repair_positions=6, budget_seconds=2.0)


def loader_rate(urls, batch_size: int, size_pool: int, workers: int, model: MetaConfig, batches: int = 60) -> float:
    dataset = stream(urls, "train", model.max_chunks, shuffle_buffer=1000, seed=0, weight_tokens=model.weight_tokens)
    loader = DataLoader(dataset.compose(by_size(batch_size, size_pool)), batch_size=None, num_workers=workers)
    it = iter(loader)
    next(it)  # start-up (worker processes, first shard)
    started = time.monotonic()
    for _ in itertools.islice(it, batches):
        pass
    return batches * batch_size / (time.monotonic() - started)


def held_out_curve(config: TrainConfig, held_out: str, programs: int) -> list[dict]:
    """Held-out figures at each of the run's checkpoints: teacher-forced tokens (of the lines: the
    figure that compares target layouts), greedy exact and functional."""
    evaluation = EvalConfig(store=config.store, zoo=config.zoo, run=config.run, split="all", limit=programs, data=held_out, lib=False)
    samples, curve = load_samples(evaluation), []
    for folder in checkpoint.complete(Store(config.store), (config.zoo, "meta", config.run)):
        model = load_model(config.store, config.zoo, config.run, folder)
        found = {d: metrics.summarise(scored) for d, scored in decodings(model, samples, evaluation, progress=False).items()}
        step = int(folder[-1].removeprefix("step-"))
        curve.append({"step": step, "programs_seen": step * config.batch_size, "tokens": found["teacher_forced"]["token_accuracy_lines"],
                      "exact": found["autoregressive"]["exact"], "functional": found["autoregressive"]["functional"]})
        print(f"held out at step {step}: tokens {100 * curve[-1]['tokens']:.1f} %, greedy exact {100 * curve[-1]['exact']:.1f} %, "
              f"functional {100 * curve[-1]['functional']:.1f} %", flush=True)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="/tmp/bench-store")
    parser.add_argument("--zoo", default="ops4to8")
    parser.add_argument("--run", default="bench-cpu")
    parser.add_argument("--preset", default="tiny")
    # The fixed budget: on 4,000 programs, batches of 8 learn most per CPU-second (README, "Train a meta-model").
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size-pool", type=int, default=TrainConfig.size_pool, help="batches sorted by length (1: random batches)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    parser.add_argument("--loader-workers", type=int, default=TrainConfig.loader_workers,
                        help="loader processes (0: decode in the trainer, best on 2 cores once examples are kept)")
    parser.add_argument("--eval-programs", type=int, default=300)
    parser.add_argument("--attention", choices=("causal", "prefix"), default="prefix", help="over the weight chunks")
    parser.add_argument("--weight-tokens", choices=weights.FORMS, default=weights.DEFAULT_FORM, help="the input's form (meta/weights.py)")
    parser.add_argument("--no-entries", dest="entries", action="store_false", help="no entry embedding for program positions (meta/model.py)")
    parser.add_argument("--augment", help="exact symmetries drawn for every example, comma-separated, or none (meta/augment.py; "
                        "default: training's, rotation)")
    parser.add_argument("--kinds", default="standard", help="zoo kinds to train on, comma-separated (e.g. standard,compressed); "
                        "the held-out zoo's shards of each kind are evaluated")
    parser.add_argument("--oversample", type=int, default=1, metavar="K", help="read the distilled kinds' shards K times per pass (meta/train.py)")
    parser.add_argument("--init-from", metavar="RUN", help="start from another run's weights (transfer, thesis §8.5)")
    parser.add_argument("--held-out", help="a held-out zoo folder <store>/<zoo> to evaluate on as well, and for the learning curve")
    parser.add_argument("--search-seconds", type=float, default=SEARCH.budget_seconds,
                        help="the checked search's budget per program (0: greedy and teacher-forced figures only)")
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="compare finished runs instead of training one")
    parser.add_argument("--plot", default="meta_cpu.png", help="with --compare: where the learning curves go")
    args = parser.parse_args()
    if args.compare:
        compare(Store(args.store), args.zoo, args.compare, args.plot)
        return

    store = Store(args.store)
    kinds = tuple(args.kinds.split(","))
    model = MetaConfig(preset=args.preset, max_chunks=256, attention=args.attention, weight_tokens=args.weight_tokens, entries=args.entries)
    config = TrainConfig(store=args.store, zoo=args.zoo, run=args.run, kinds=kinds, init_from=args.init_from, model=model, steps=args.steps, batch_size=args.batch_size,
                         size_pool=args.size_pool, lr=args.lr, warmup=min(200, args.steps // 10), loader_workers=args.loader_workers,
                         augment=None if args.augment is None else tuple(n for n in args.augment.split(",") if n not in ("", "none")), oversample=args.oversample,
                         checkpoint_every=max(args.steps // 5, 1), log_every=25)
    urls = training_urls(store, config)  # what training reads, oversampling included
    print(f"zoo {args.zoo}: {len(urls)} shards")
    rate = loader_rate(urls, args.batch_size, args.size_pool, args.loader_workers, model)
    print(f"loader alone, decoding: {rate:.0f} samples/s ({args.loader_workers} worker(s)); later epochs come from memory")
    search = dataclasses.replace(SEARCH, budget_seconds=args.search_seconds, beam=SEARCH.beam if args.search_seconds > 0 else 0)
    started = time.monotonic()
    figures = train(config, logdir=f"/tmp/runs/{args.run}")
    print(f"trained {figures['step']} steps in {time.monotonic() - started:.0f} s: {figures['samples_per_second']:.0f} samples/s "
          f"final training loss {figures['loss']:.3f}, token accuracy {figures['token_accuracy']:.3f}")

    bench = {"recipe": {"targets": vocab.LAYOUT.rsplit("/", 1)[-1], "preset": args.preset, "attention": args.attention,
                        "weight_tokens": args.weight_tokens, "entries": args.entries, "steps": args.steps,
                        "batch_size": args.batch_size, "lr": config.lr, "size_pool": args.size_pool, "augment": ",".join(config.augment) or "none",
                        "kinds": args.kinds, "oversample": args.oversample, "init_from": args.init_from or "none"},
             "search": {k: getattr(search, k) for k in ("beam", "repair_rounds", "repair_positions", "fit", "budget_seconds")}, "train_seconds": round(time.monotonic() - started),
             "train_token_accuracy": figures["token_accuracy"]}
    # A student's program is verified by its weights alone (see README, "Decompile a model"): students are not searched.
    for data, split, kind in ((None, "val", "standard"), *((args.held_out, "all", kind) for kind in kinds if args.held_out)):
        result = evaluate(EvalConfig(store=args.store, zoo=args.zoo, run=args.run, kind=kind, split=split, limit=args.eval_programs, data=data,
                                     reader=False, lib=kind == "standard" and bool(data or not args.held_out), search=search if kind == "standard" else dataclasses.replace(search, beam=0)))
        print(f"\n{'held-out zoo ' + data if data else 'validation split'}, {kind} ({result['programs']} programs):")
        print(report.text_table(report.bucket_table(result)))
        for decoding, summary in result["decodings"].items():
            print(f"{decoding}: exact {100 * summary['exact']:.1f}%, functional {100 * summary['functional']:.1f}%, valid {100 * summary['valid']:.1f}%")
        found = result["search"]
        if found:
            print(f"checked search: verified {100 * found['verified']:.1f}%, exact {100 * found['exact']:.1f}%, "
                  f"functional {100 * found['functional']:.1f}%, {found['seconds_per_program']:.2f} s per program")
        print(f"report: {result['location']}/report.md")
        bench[("held_out" if data else "val") + ("" if kind == "standard" else f"_{kind}")] = {
            "programs": result["programs"], "teacher_forced_tokens": result["decodings"]["teacher_forced"]["token_accuracy"],
            "line_tokens": result["decodings"]["teacher_forced"]["token_accuracy_lines"],
            **{f"greedy_{k}": result["decodings"]["autoregressive"][k] for k in ("exact", "functional")},
            **{f"search_{k}": found[k] for k in ("verified", "exact", "functional") if found}}
        if result["lib"]:  # Tracr's 13 hand-written programs: how many come back exactly, greedy and searched
            bench["lib"] = {"programs": len(result["lib"]), "greedy_exact": sum(r["exact"] for r in result["lib"]),
                            **({"search_exact": sum(r["search"]["exact"] for r in result["lib"])} if found else {})}
    if args.held_out:
        bench["curve"] = held_out_curve(config, args.held_out, args.eval_programs)
    store.write_bytes(json.dumps(bench, indent=1).encode(), args.zoo, "meta", args.run, "bench.json")


def compare(store: Store, zoo: str, runs: list[str], plot: str) -> None:
    """A markdown table of the runs' figures and their held-out learning curves (tokens, greedy exact)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["teacher_forced_tokens", "line_tokens", "greedy_exact", "greedy_functional", "search_verified", "search_exact"]
    print("| run | recipe | train s | train tokens % | " + " | ".join(f"held-out {c.replace('_', ' ')} %" for c in columns)
          + " | held-out compressed line tokens % | held-out compressed greedy functional % | lib exact greedy / searched |")
    print("|" + "---|" * (7 + len(columns)))
    figure, (tokens, exact) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        bench = json.loads(store.read_bytes(zoo, "meta", run, "bench.json"))
        held = bench.get("held_out", {})  # a run evaluated on its validation split only shows "-", not val figures
        recipe = ", ".join(f"{k}={v}" for k, v in bench["recipe"].items())
        students = bench.get("held_out_compressed", {})
        print(f"| {run} | {recipe} | {bench.get('train_seconds') or '-'} | {100 * bench['train_token_accuracy']:.1f} | "
              + " | ".join(f"{100 * figures[c]:.1f}" if c in figures else "-"
                           for figures, c in [*((held, c) for c in columns), (students, "line_tokens"), (students, "greedy_functional")])
              + f" | {lib_figure(bench.get('lib'))} |")
        curve = bench.get("curve", [])
        if not curve:
            print(f"({run} has no held-out learning curve: trained without --held-out)")
        seen = [point["programs_seen"] for point in curve]
        tokens.plot(seen, [100 * point["tokens"] for point in curve], marker="o", label=run)
        exact.plot(seen, [100 * point["exact"] for point in curve], marker="o", label=run)
    for axes, what in ((tokens, "held-out line tokens right, teacher-forced (%)"), (exact, "held-out exact programs, greedy (%)")):
        axes.set_xlabel("programs seen in training")
        axes.set_ylabel(what)
        axes.grid(alpha=0.3)
    exact.legend()
    figure.tight_layout()
    figure.savefig(plot, dpi=120)
    print(f"plot: {plot}")


def lib_figure(lib: dict | None) -> str:
    """'greedy / searched of N' Tracr lib programs exactly right ('-' where not measured)."""
    if not lib:
        return "-"
    return f"{lib['greedy_exact']} / {lib.get('search_exact', '-')} of {lib['programs']}"


if __name__ == "__main__":
    main()
