"""`inverse-tracr <stage> …`: one subcommand per stage; user mistakes are one clear line, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
from typing import Sequence

from inverse_tracr import progress
from inverse_tracr.compile.workers import MEMORY_LIMIT_MB
from inverse_tracr.distill.config import KINDS as STUDENT_KINDS
from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.errors import InverseTracrError
from inverse_tracr.evaluate.config import DECODINGS, EvalConfig
from inverse_tracr.meta.config import MetaConfig, SearchConfig, TrainConfig
from inverse_tracr.meta.presets import PRESETS
from inverse_tracr.meta.weights import FORMS
from inverse_tracr.zoo.config import ZooConfig

EXAMPLES = """
examples:
  inverse-tracr generate --store ./zoo-store --zoo demo --programs 200 --shard-size 50
  inverse-tracr generate --store gs://my-bucket/zoos --zoo big --programs 800000 --shards 0:10
  inverse-tracr distill --store ./zoo-store --zoo demo --kind compressed
  inverse-tracr inspect ./zoo-store/demo/standard/shard-000000.tar
  inverse-tracr train --store ./zoo-store --zoo demo --preset tiny --steps 500
  inverse-tracr evaluate --store ./zoo-store --zoo demo --split val
  inverse-tracr decompile ./zoo-store/demo/standard/shard-000000.tar --zoo demo --index 3
"""


class UserError(InverseTracrError):
    """A mistake in the command line or its inputs; printed as one line."""


def _default(config: type, name: str):
    """The default of setting `name` in a config dataclass: the one place each default lives."""
    return next(field.default for field in dataclasses.fields(config) if field.name == name)


def _config(config: type, args: argparse.Namespace, **given):
    """A config dataclass from the options named as its fields, and `given`; a bad value is a usage error."""
    options = {field.name: getattr(args, field.name) for field in dataclasses.fields(config) if hasattr(args, field.name)}
    try:
        return config(**{**options, **given})
    except ValueError as error:
        raise UserError(str(error)) from None


def _shard_range(text: str) -> range:
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (shard indices, B excluded), got {text!r}") from None
    if not 0 <= start < stop:
        raise argparse.ArgumentTypeError(f"expected 0 <= A < B, got {text!r}")
    return range(start, stop)


def _name_list(text: str) -> tuple[str, ...]:
    """Names (zoo kinds, symmetries) from "a,b" or a JSON list (the chart's `kinds` workflow parameter)."""
    if text.lstrip().startswith("["):
        import json

        try:
            return tuple(str(kind) for kind in json.loads(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a JSON list of names, got {text!r}") from None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _part(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (part K of N, counted from 0), got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"expected 0 <= K < N, got {text!r}")
    return k, n


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return value


def _log_format(text: str) -> str:
    if text not in progress.FORMATS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(progress.FORMATS)}, got {text!r}")
    return text


#: How progress is logged without a terminal: options, else these variables (how pods set them), else defaults.
LOG_SETTINGS = (
    ("log_every_seconds", "INVERSE_TRACR_LOG_EVERY_SECONDS", _seconds, "10"),
    ("log_format", "INVERSE_TRACR_LOG_FORMAT", _log_format, "text"),
)


def _log_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """--log-every-seconds and --log-format, taken before the command and after it."""
    # After the command they default to SUPPRESS: a subcommand's default would replace a value given before it.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--log-every-seconds", type=_seconds, default=default, metavar="SECONDS",
                        help="without a terminal, seconds between progress lines; 0: every update "
                             "(default: $INVERSE_TRACR_LOG_EVERY_SECONDS, else 10)")
    parser.add_argument("--log-format", type=_log_format, default=default, metavar="{" + ",".join(progress.FORMATS) + "}",
                        help="without a terminal, progress lines as text or one JSON object each "
                             "(default: $INVERSE_TRACR_LOG_FORMAT, else text)")


def _log_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[float | str]:
    values = []
    for name, variable, parse, default in LOG_SETTINGS:
        value = getattr(args, name)
        if value is None:
            try:
                value = parse(os.environ.get(variable) or default)  # empty: unset, as a chart may leave it
            except argparse.ArgumentTypeError as error:
                parser.error(f"{variable}: {error}")
        values.append(value)
    return values


def _where(parser: argparse.ArgumentParser, run: bool = False) -> None:
    """--store and --zoo (and --run): where a stage reads and writes."""
    parser.add_argument("--store", default="./zoo-store", help="store URL: a local path, file://, gs:// or s3:// (default: %(default)s)")
    parser.add_argument("--zoo", default="demo", help="zoo name, a folder under the store (default: %(default)s)")
    if run:
        parser.add_argument("--run", default=_default(TrainConfig, "run"), help="meta-model run: a folder <zoo>/meta/<run> (default: %(default)s)")


def _pool(parser: argparse.ArgumentParser, work: str) -> None:
    """--workers, --memory-limit-mb and --quiet of a stage that runs a pool of worker processes."""
    parser.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, help=f"{work} processes (default: CPU count, %(default)s)")
    parser.add_argument("--memory-limit-mb", type=_positive, default=MEMORY_LIMIT_MB,
                        help=f"kill a {work} process above this resident memory (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _pool_options(args: argparse.Namespace) -> dict:
    return {"workers": args.workers, "memory_limit_mb": args.memory_limit_mb, "progress": not args.quiet}


def _print_summary(summary) -> int:
    for line in summary.lines():
        print(line)
    return 0


def _which_sample(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="shard URL, e.g. ./zoo-store/demo/standard/shard-000000.tar or gs://bucket/zoo/standard/shard-000000.tar")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--key", help="program id of the sample (default: the first)")
    which.add_argument("--index", type=int, default=0, help="position of the sample in the shard (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inverse-tracr",
        description="Build zoos of compiled transformers and learn to decompile them into RASP programs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    _log_options(parser, top=True)
    stages = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    rn = stages.add_parser(
        "run",
        help="run every stage locally: generate a zoo, train a meta-model, evaluate it, show the results",
        description=(
            "Generate a zoo, train a meta-model and evaluate it on this machine (local store, process pool, CPU), "
            "then print the accuracy buckets and where the report is. Rerunning reuses finished shards, checkpoints "
            "and reports. --config takes a YAML file shaped like the Helm chart's values (store, zoo, training, "
            "evaluation), checked against the chart's schema."
        ),
    )
    rn.add_argument("--preset", default="demo", help="starting values: demo (~7 min on 2 cores, ~9 with a cold JAX cache) or small (default: %(default)s)")
    rn.add_argument("--config", help="YAML values overriding the preset (same keys as helm/inverse-tracr/values.yaml)")
    rn.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    rn.set_defaults(handler=_run)

    gen = stages.add_parser(
        "generate",
        help="sample RASP programs, compile them with Tracr, verify them, write standard shards",
        description=(
            "Sample random RASP programs, compile each with Tracr, keep it only if the compiled model "
            "reproduces rasp.evaluate on random inputs, and write WebDataset shards to "
            "<store>/<zoo>/standard/. Finished shards are skipped, so rerunning continues a run."
        ),
    )
    _where(gen)
    gen.add_argument("--programs", type=_positive, default=1000, help="verified programs wanted, rounded up to whole shards (default: %(default)s)")
    gen.add_argument("--shard-size", type=_positive, default=_default(ZooConfig, "shard_size"), help="programs per shard (default: %(default)s)")
    where = gen.add_mutually_exclusive_group()
    where.add_argument("--shards", type=_shard_range, metavar="A:B", help="write only shards A..B-1 (for fanning out over machines)")
    where.add_argument("--part", type=_part, metavar="K/N", help="write only the K-th of N equal slices of the shards (K from 0): one pod of N")
    gen.add_argument("--min-ops", type=_positive, default=_default(ZooConfig, "min_ops"), help="fewest lines per program (default: %(default)s)")
    gen.add_argument("--max-ops", type=_positive, default=_default(ZooConfig, "max_ops"), help="most lines per program (default: %(default)s)")
    gen.add_argument("--vocab-size", type=_positive, default=_default(ZooConfig, "vocab_size"), help="input tokens are 0..N-1 (default: %(default)s)")
    gen.add_argument("--max-seq-len", type=_positive, default=_default(ZooConfig, "max_seq_len"), help="longest input (default: %(default)s)")
    gen.add_argument("--seed", type=int, default=_default(ZooConfig, "seed"), help="zoo seed (default: %(default)s)")
    gen.add_argument("--verify-inputs", type=_positive, default=_default(ZooConfig, "verify_inputs"),
                     help="random inputs each compiled model must get right when there are too many to check them all "
                          "(up to 5,000 input sequences, every one is checked) (default: %(default)s)")
    gen.add_argument("--random-tables", type=float, default=_default(ZooConfig, "random_tables"),
                     help="share of Map, SequenceMap and Select lines with a random table instead of a library function (default: %(default)s)")
    _pool(gen, "compile")
    gen.set_defaults(handler=_generate)

    dis = stages.add_parser(
        "distill",
        help="distil every standard model into a compressed or natural student, write <kind> shards",
        description=(
            "Read standard shard i and write <store>/<zoo>/<kind>/shard-i.tar: for every compiled model, a "
            "student distilled in JAX — 'compressed' learns a projection of the residual stream and folds it "
            "into the frozen weights, 'natural' trains every weight from scratch — kept only if it agrees "
            "with the teacher on held-out inputs and its layer-wise loss is small (the thesis's gates). "
            "Finished shards are skipped, so rerunning continues a run."
        ),
    )
    _where(dis)
    dis.add_argument("--kind", choices=STUDENT_KINDS, default=_default(DistillConfig, "kind"), help="kind of student (default: %(default)s)")
    dis.add_argument("--shards", type=_shard_range, metavar="A:B", help="distil only standard shards A..B-1 (default: every finished one)")
    dis.add_argument("--part", type=_part, metavar="K/N", help="distil only the K-th of N equal slices of those shards (K from 0): one pod of N")
    dis.add_argument("--compression", type=float, default=_default(DistillConfig, "compression"), help="residual width / student width (default: %(default)s)")
    dis.add_argument("--max-steps", type=_positive, default=_default(DistillConfig, "max_steps"), help="give a student up after this many steps (default: %(default)s)")
    dis.add_argument(
        "--attempts", type=_positive, default=_default(DistillConfig, "attempts"), help="training runs per student: a rejected run starts again from a fresh initialisation (default: %(default)s)"
    )
    dis.add_argument("--seed", type=int, default=0, help="distillation seed (default: %(default)s)")
    _pool(dis, "training")
    dis.set_defaults(handler=_distill)

    ins = stages.add_parser(
        "inspect",
        help="print one sample of a shard: program, canonical lines, model layout, verification",
        description="Print a sample of a shard (any store URL): its program, canonical lines, block layout and verification result.",
    )
    _which_sample(ins)
    ins.set_defaults(handler=_inspect)

    tr = stages.add_parser(
        "train",
        help="train a meta-model (weights in, program out) on a zoo's shards",
        description=(
            "Train the meta-model on the zoo's finished shards, streamed from the store. The run lives in "
            "<store>/<zoo>/meta/<run>/; rerunning resumes from its newest checkpoint. For several processes "
            "or machines, start this command with `accelerate launch -m inverse_tracr.cli train …`."
        ),
    )
    _where(tr, run=True)
    tr.add_argument("--kinds", default=",".join(_default(TrainConfig, "kinds")), type=_name_list,
                    help='zoo kinds to train on, comma-separated or a JSON list like ["standard","compressed"] (default: %(default)s)')
    tr.add_argument("--preset", default=_default(MetaConfig, "preset"), choices=sorted(PRESETS), help="model size (default: %(default)s)")
    tr.add_argument("--decoder", default=_default(MetaConfig, "decoder"), choices=["autoregressive", "slots"], help="program decoder (default: %(default)s)")
    tr.add_argument("--attention", default=_default(MetaConfig, "attention"), choices=["prefix", "causal"],
                    help="over the weight chunks: prefix (they see each other both ways) or causal (GPT-2's) (default: %(default)s)")
    tr.add_argument("--weight-tokens", default=_default(MetaConfig, "weight_tokens"), choices=FORMS,
                    help="the model's weights as tokens: neurons (one per unit that reads and writes the residual), offsets "
                         "(neurons that also say where in its variable's block each dimension they read and write lies) or "
                         "chunks (512 floats of the flattened tensors, as the thesis) (default: %(default)s)")
    tr.add_argument("--no-entries", dest="entries", action="store_false",
                    help="program positions do not embed the operand values of the table entry they predict (an ablation; "
                         "by default they do, which the offsets weight tokens name alike)")
    tr.add_argument("--steps", type=_positive, default=_default(TrainConfig, "steps"), help="optimizer steps (default: %(default)s)")
    tr.add_argument("--batch-size", type=_positive, default=_default(TrainConfig, "batch_size"), help="programs per step and process (default: %(default)s)")
    tr.add_argument("--size-pool", type=_positive, default=_default(TrainConfig, "size_pool"),
                    help="batches' worth of examples sorted by length before batching, so that a batch is little padding; "
                         "1: random batches (default: %(default)s)")
    tr.add_argument("--grad-accum", type=_positive, default=_default(TrainConfig, "grad_accum"), help="batches per optimizer step (default: %(default)s)")
    tr.add_argument("--lr", type=float, help="peak learning rate (default: the preset's: "
                    + ", ".join(f"{name} {preset.lr:g}" for name, preset in PRESETS.items()) + ")")
    tr.add_argument("--warmup", type=int, default=_default(TrainConfig, "warmup"), help="warm-up steps before cosine decay (default: %(default)s)")
    tr.add_argument("--input-noise", type=float, default=_default(MetaConfig, "input_noise"), help="Gaussian weight noise, as a fraction of their std (default: %(default)s)")
    tr.add_argument("--input-dropout", type=float, default=_default(MetaConfig, "input_dropout"), help="chance of dropping a weight chunk (default: %(default)s)")
    tr.add_argument("--seed", type=int, default=_default(TrainConfig, "seed"), help="seed (default: %(default)s)")
    tr.add_argument("--checkpoint-every", type=_positive, default=_default(TrainConfig, "checkpoint_every"), help="steps between checkpoints (default: %(default)s)")
    tr.add_argument("--loader-workers", type=int, default=_default(TrainConfig, "loader_workers"), help="data-loader processes per rank (default: %(default)s)")
    tr.add_argument("--cache-mb", type=int, default=_default(TrainConfig, "cache_mb"),
                    help="MiB of decoded examples each loader process keeps for later epochs; 0: decode every time (default: %(default)s)")
    tr.add_argument("--augment", type=lambda text: () if text.strip() == "none" else _name_list(text), default=None,
                    help="exact symmetries of the weights drawn anew for every example seen, comma-separated, or none: hidden (MLP "
                         "units reordered), heads (each attention layer's heads reordered), residual (residual basis permuted), "
                         "rotation (a distilled student's residual turned by a random orthogonal matrix); neuron weight tokens only "
                         "(default: rotation, none for chunk tokens)")
    tr.add_argument("--oversample", type=_positive, default=_default(TrainConfig, "oversample"), metavar="K",
                    help="read each distilled kind's shards K times for each time the standard ones are read (default: %(default)s)")
    tr.add_argument("--init-from", metavar="RUN", type=lambda run: run or None,
                    help="start a new run from the newest weights of another run of the same zoo and model size (transfer: a "
                         "compressed students' decompiler from the standard one); empty or unset: from scratch")
    tr.add_argument("--mixed-precision", default=_default(TrainConfig, "mixed_precision"), choices=["no", "bf16", "fp16"], help="bf16 on GPUs (default: %(default)s)")
    tr.add_argument("--logdir", help="TensorBoard folder (default: runs/<zoo>/<run>)")
    tr.add_argument("--stop-after", type=_positive, help="stop at this step (a later run resumes)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(handler=_train)

    ev = stages.add_parser(
        "evaluate",
        help="score a trained run on a split of a zoo; write report.md, report.json and plots to the store",
        description=(
            "Decode every program of a split teacher-forced and autoregressively, plus Tracr's hand-written lib "
            "programs; report token accuracy, accuracy buckets, exact and functional matches. The report goes to "
            "<store>/<zoo>/meta/<run>/eval/<kind>-<split>/ (with --data: data-<hash of DATA>-<kind>-<split>/)."
        ),
    )
    _where(ev, run=True)
    ev.add_argument("--kind", default=_default(EvalConfig, "kind"), choices=["standard", "compressed", "natural"], help="zoo kind (default: %(default)s)")
    ev.add_argument("--split", default=_default(EvalConfig, "split"), choices=["train", "val", "test", "all"], help="split (default: %(default)s)")
    ev.add_argument("--limit", type=_positive, help="evaluate at most this many programs")
    ev.add_argument("--decoding", default="both", choices=["both", "teacher_forced", "autoregressive"], help="(default: %(default)s)")
    ev.add_argument("--no-lib", action="store_true", help="skip Tracr's lib programs")
    ev.add_argument("--data", help="evaluate on other shards: a shard URL pattern, or a zoo folder <store>/<zoo> (e.g. a held-out seed)")
    ev.add_argument("--beam", type=int, default=_default(EvalConfig, "search").beam, help="beam width of the checked search (0: no search) (default: %(default)s)")
    ev.add_argument("--repair-rounds", type=int, default=_default(EvalConfig, "search").repair_rounds, help="repair rounds of the search (default: %(default)s)")
    ev.add_argument("--budget-seconds", type=float, default=_default(EvalConfig, "search").budget_seconds, help="search time per program (default: %(default)s)")
    ev.add_argument("--no-fit", action="store_true", help="search without fitting candidates' tables to the model")
    ev.add_argument("--no-reader", action="store_true", help="skip the exact reader's figures")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_evaluate)

    st = stages.add_parser(
        "status",
        help="show a zoo's progress from the store alone: shards per kind, rejections, checkpoints, evaluations",
        description="Read the store (no cluster access needed) and show shards done per kind, programs, rejections, training checkpoints and evaluation results.",
    )
    _where(st)
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.set_defaults(handler=_status)

    sub = stages.add_parser(
        "submit",
        help="start an Argo Workflow from an installed WorkflowTemplate (current kube-context)",
        description=(
            "Create a Workflow from a WorkflowTemplate installed by the Helm chart, with parameters, through the "
            "Kubernetes API (the current kube-context, or the in-cluster service account), and print how to follow it."
        ),
    )
    sub.add_argument("template", nargs="?", default="inverse-tracr-pipeline",
                     help="WorkflowTemplate: inverse-tracr-{pipeline,generate,train,evaluate} (default: %(default)s)")
    sub.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE", type=_parameter,
                     help="workflow parameter, e.g. -p programs=800000 -p pods=500 (repeatable)")
    sub.add_argument("-n", "--namespace", default="inverse-tracr", help="namespace (default: %(default)s)")
    sub.add_argument("--context", help="kube-context (default: the current one)")
    sub.set_defaults(handler=_submit)

    dec = stages.add_parser(
        "decompile",
        help="the program a model computes, with the evidence for it (exact reader, else meta-model + checked search)",
        description=(
            "Decompile a model: a zoo sample (shard URL and --index/--key) or a params .npz with --layout. Standard "
            "Tracr models are read exactly from their weights, compressed students too (unfolded into the compiled "
            "model they were distilled from; the reading must fold into their weights); others (natural students, "
            "trained models) go to the meta-model of "
            "--store/--zoo/--run, whose candidates (greedy, beam search, samples, repairs) are each run against the "
            "model on every input: the answer is the one that agrees best, marked verified or not."
        ),
    )
    _which_sample(dec)
    _where(dec, run=True)
    dec.add_argument("--layout", help="with a .npz: the model's layout (a sample's meta.json, or its 'model' object)")
    dec.add_argument("--method", choices=("auto", "reader", "meta"), default="auto",
                     help="auto: the reader, then the meta-model where it refuses (default: %(default)s)")
    dec.add_argument("--beam", type=_positive, default=_default(SearchConfig, "beam"), help="beam width of the search (1: greedy only) (default: %(default)s)")
    dec.add_argument("--samples", type=int, default=_default(SearchConfig, "samples"), help="programs sampled besides the beam (default: %(default)s)")
    dec.add_argument("--temperature", type=float, default=_default(SearchConfig, "temperature"), help="sampling temperature (default: %(default)s)")
    dec.add_argument("--repair-rounds", type=int, default=_default(SearchConfig, "repair_rounds"), help="rounds of repair around the best candidates (default: %(default)s)")
    dec.add_argument("--budget-seconds", type=float, default=_default(SearchConfig, "budget_seconds"), help="stop searching after this long (default: %(default)s)")
    dec.add_argument("--no-fit", action="store_true", help="do not fit candidates' tables to the model's behaviour")
    dec.add_argument("--json", action="store_true", help="print the result as JSON")
    dec.set_defaults(handler=_decompile)
    for command in stages.choices.values():
        _log_options(command, top=False)
    return parser


def _run(args: argparse.Namespace) -> int:
    from inverse_tracr.pipeline.run import load_values, plan, run

    reports = run(plan(load_values(args.config, args.preset)), progress=not args.quiet)
    for kind, result in reports.items():
        print(f"\n{kind} models ({result['programs']} programs):")
        _print_result(result)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from inverse_tracr.zoo.generate import generate
    from inverse_tracr.zoo.shards import part_of

    config = _config(ZooConfig, args)
    shards = args.shards
    if args.part is not None:
        shards = part_of(list(range(config.shards_for(args.programs))), args.part)
    return _print_summary(generate(args.store, args.zoo, config, programs=args.programs, shards=shards, **_pool_options(args)))


def _distill(args: argparse.Namespace) -> int:
    from inverse_tracr.distill.stage import distill_zoo

    config = _config(DistillConfig, args)
    return _print_summary(distill_zoo(args.store, args.zoo, config, seed=args.seed, shards=args.shards, part=args.part, **_pool_options(args)))


def _inspect(args: argparse.Namespace) -> int:
    from inverse_tracr.zoo.inspect import describe, find_sample

    sample, errors = find_sample(args.url, key=args.key, index=args.index)
    if sample is None:
        raise UserError(errors[0] if errors else f"no such sample in {args.url}")
    print(describe(sample))
    return 0


def _train(args: argparse.Namespace) -> int:
    from inverse_tracr.meta.train import distributed, train

    config = _config(TrainConfig, args, model=_config(MetaConfig, args))
    figures = train(config, stop_after=args.stop_after, logdir=args.logdir, progress=not args.quiet)
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in figures.items() if k not in ("step", "ranks", "ranks_in_sync"))
    print(f"step {figures['step']}: {numbers}")
    if figures.get("ranks", 1) > 1:
        print(f"{figures['ranks']} ranks, parameters {'identical' if figures['ranks_in_sync'] else 'DIFFERENT'} across ranks")
    if distributed():
        # Checkpoints and logs are closed; skip interpreter teardown, where gloo can deadlock.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from inverse_tracr.evaluate.run import evaluate

    decodings = DECODINGS if args.decoding == "both" else (args.decoding,)
    search = dataclasses.replace(_default(EvalConfig, "search"), beam=args.beam, repair_rounds=args.repair_rounds,
                                 budget_seconds=args.budget_seconds, fit=not args.no_fit)
    config = _config(EvalConfig, args, decodings=decodings, lib=not args.no_lib, search=search, reader=not args.no_reader)
    _print_result(evaluate(config, progress=not args.quiet))
    return 0


def _print_result(result: dict) -> None:
    """An evaluation's figures: the bucket table, greedy, search and reader, apart."""
    from inverse_tracr.evaluate import report

    print(report.text_table(report.bucket_table(result)))
    for decoding, summary in result["decodings"].items():
        print(f"{decoding}: exact {100 * summary['exact']:.1f}%, functionally equivalent {100 * summary['functional']:.1f}%, "
              f"valid programs {100 * summary['valid']:.1f}%")
    if result.get("search"):
        found = result["search"]
        print(f"meta-model + checked search: verified {100 * found['verified']:.1f}%, exact {100 * found['exact']:.1f}%, "
              f"functionally equivalent {100 * found['functional']:.1f}%, {found['seconds_per_program']:.2f} s per program")
    if result.get("reader"):
        read = result["reader"]
        print(f"exact reader (not the meta-model): read {100 * read['read']:.1f}%, exact {100 * read['exact']:.1f}%, "
              f"functionally equivalent {100 * read['functional']:.1f}%, {read['wrong']} wrong")
    if result["lib"]:
        lib = result["lib"]
        for answer, how in ((None, "meta-model, greedy"), ("search", "meta-model + checked search"), ("reader", "exact reader")):
            if answer is None or answer in lib[0]:
                right = [r["name"] for r in lib if (r[answer] if answer else r)["exact"]]
                print(f"Tracr lib programs exactly right ({how}): {', '.join(right) if right else 'none'} (of {len(lib)})")
    print(f"report: {result['location']}/report.md, predictions.jsonl and plots beside it")


def _status(args: argparse.Namespace) -> int:
    import json

    from inverse_tracr.pipeline.status import format_status, zoo_status

    status = zoo_status(args.store, args.zoo)
    print(json.dumps(status, indent=1) if args.json else format_status(status))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from inverse_tracr.pipeline.submit import submit, workflow_body

    parameters = dict(args.parameter)
    name = submit(workflow_body(args.template, parameters), args.namespace, args.context)
    zoo = parameters.get("zoo", "<zoo>")
    print(f"submitted workflow {name} in namespace {args.namespace}")
    print(f"  follow it:   argo watch -n {args.namespace} {name}")
    print(f"  its pods:    kubectl get pods -n {args.namespace} -l workflows.argoproj.io/workflow={name}")
    print(f"  a stage's:   kubectl get pods -n {args.namespace} -l app.kubernetes.io/component=generate,inverse-tracr/zoo={zoo}")
    print(f"  progress:    inverse-tracr status --store <store URL> --zoo {zoo}")
    return 0


def _decompile(args: argparse.Namespace) -> int:
    import json

    from inverse_tracr.compile.model import CompiledModel, Layout
    from inverse_tracr.meta.decompile import decompile, model_from_sample
    from inverse_tracr.zoo.inspect import find_sample
    from inverse_tracr.zoo.sample import SampleError, params_from_npz

    true, threshold = None, 1.0
    if args.url.endswith(".npz"):
        if not args.layout:
            raise UserError("a .npz holds only parameters: give the model's layout with --layout (a sample's meta.json)")
        try:
            with open(args.url, "rb") as f:
                params = params_from_npz(f.read())
            with open(args.layout) as f:
                layout = json.load(f)
            model = CompiledModel(params, Layout.from_json(layout.get("model", layout)))
        except (OSError, ValueError, SampleError, AttributeError) as error:
            raise UserError(f"cannot read the model: {error}") from None
    else:
        sample, errors = find_sample(args.url, key=args.key, index=args.index)
        if sample is None:
            raise UserError(errors[0] if errors else f"no such sample in {args.url}")
        model, threshold = model_from_sample(sample)
        true = sample.program
    config = _config(SearchConfig, args, fit=not args.no_fit)
    # The reader first: the meta-model (torch, transformers: seconds to import and load) only where it refuses.
    result = None if args.method == "meta" else decompile(model, None, "reader", threshold, config)
    if args.method == "meta" or (args.method == "auto" and result.program is None):
        from inverse_tracr.meta.train import TrainError, load_model

        try:
            meta_model = load_model(args.store, args.zoo, args.run)
        except (TrainError, FileNotFoundError) as error:
            if args.method == "meta":
                raise UserError(str(error)) from None
        else:
            result = decompile(model, meta_model, args.method, threshold, config)
    if args.json:
        print(json.dumps({**result.to_json(), "true": None if true is None else true.to_json()}, indent=1))
        return 0
    if true is not None:
        print("true program:")
        print("\n".join("  " + line for line in true.source().splitlines()))
    e = result.evidence
    if result.program is None:
        print(f"no program ({e.method}): {e.reader_refusal or 'no candidate parsed'}")
        return 0
    status = "VERIFIED" if e.verified else "NOT verified"
    print(f"decompiled ({e.method}, {status}){'  — exactly right' if true is not None and result.program == true else ''}:")
    for i, text in enumerate(result.program.source().splitlines()):
        differs = true is not None and (i >= len(true.lines) or i >= len(result.program.lines) or true.lines[i] != result.program.lines[i])
        print(f"{'*' if differs and i < len(result.program.lines) else ' '} {text}")
    if model.layout.readout:  # a student: its weights verify, not its behaviour (meta.decompile)
        bar, certificate = f"the student agreed with its teacher on {e.threshold:.2%}", "compiled again, folds into the student's weights"
    else:
        bar, certificate = f"verified needs {e.threshold:.2%}", "recompiled to the same weights"
    print(f"agreement with the model: {e.agreement:.2%} of the {e.defined:.0%} of outputs it defines, on "
          f"{e.inputs} {'(all)' if e.exhaustive else 'random'} inputs ({bar}); {certificate}: {e.identical_weights}; "
          f"{e.candidates} candidate(s) in {e.seconds:.2f} s{f', found by {e.found_by}' if e.found_by else ''}")
    if e.reader_refusal:
        print(f"reader: {e.reader_refusal}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Libraries (gcsfs, botocore) log their retries with tracebacks: only ours, unless --verbose.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("inverse_tracr").setLevel(logging.INFO if args.verbose else logging.WARNING)
    progress.configure(*_log_settings(parser, args))
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; rerun the same command to continue", file=sys.stderr)
        # Worker pools are closed by now, and every store write is whole-object: nothing is left
        # for interpreter teardown to finish, where library threads could still print.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    except InverseTracrError as error:
        if args.verbose:
            raise
        print(f"inverse-tracr {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
