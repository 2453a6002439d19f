"""`inverse-tracr <stage> …`: one subcommand per stage; user mistakes are one clear line, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

EXAMPLES = """
examples:
  inverse-tracr generate --store ./zoo-store --zoo demo --programs 200 --shard-size 50
  inverse-tracr generate --store gs://my-bucket/zoos --zoo big --programs 800000 --shards 0:10
  inverse-tracr inspect ./zoo-store/demo/standard/shard-000000.tar
"""


class UserError(Exception):
    """A mistake in the command line or its inputs; printed as one line."""


def _shard_range(text: str) -> range:
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (shard indices, B excluded), got {text!r}") from None
    if not 0 <= start < stop:
        raise argparse.ArgumentTypeError(f"expected 0 <= A < B, got {text!r}")
    return range(start, stop)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inverse-tracr",
        description="Build zoos of compiled transformers and learn to decompile them into RASP programs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    stages = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    gen = stages.add_parser(
        "generate",
        help="sample RASP programs, compile them with Tracr, verify them, write standard shards",
        description=(
            "Sample random RASP programs, compile each with Tracr, keep it only if the compiled model "
            "reproduces rasp.evaluate on random inputs, and write WebDataset shards to "
            "<store>/<zoo>/standard/. Finished shards are skipped, so rerunning continues a run."
        ),
    )
    gen.add_argument("--store", default="./zoo-store", help="store URL: a local path, file://, gs:// or s3:// (default: %(default)s)")
    gen.add_argument("--zoo", default="demo", help="zoo name, a folder under the store (default: %(default)s)")
    gen.add_argument("--programs", type=_positive, default=1000, help="verified programs wanted, rounded up to whole shards (default: %(default)s)")
    gen.add_argument("--shard-size", type=_positive, default=100, help="programs per shard (default: %(default)s)")
    gen.add_argument("--shards", type=_shard_range, metavar="A:B", help="write only shards A..B-1 (for fanning out over machines)")
    gen.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, help="compile processes (default: CPU count, %(default)s)")
    gen.add_argument("--min-ops", type=_positive, default=4, help="fewest lines per program (default: %(default)s)")
    gen.add_argument("--max-ops", type=_positive, default=8, help="most lines per program (default: %(default)s)")
    gen.add_argument("--vocab-size", type=_positive, default=5, help="input tokens are 0..N-1 (default: %(default)s)")
    gen.add_argument("--max-seq-len", type=_positive, default=5, help="longest input (default: %(default)s)")
    gen.add_argument("--seed", type=int, default=0, help="zoo seed (default: %(default)s)")
    gen.add_argument("--verify-inputs", type=_positive, default=32, help="random inputs each compiled model must get right (default: %(default)s)")
    gen.add_argument("--memory-limit-mb", type=_positive, default=4096, help="kill a compile worker above this resident memory (default: %(default)s)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(run=_generate)

    ins = stages.add_parser(
        "inspect",
        help="print one sample of a shard: program, canonical lines, model layout, verification",
        description="Print a sample of a shard (any store URL): its program, canonical lines, block layout and verification result.",
    )
    ins.add_argument("url", help="shard URL, e.g. ./zoo-store/demo/standard/shard-000000.tar or gs://bucket/zoo/standard/shard-000000.tar")
    which = ins.add_mutually_exclusive_group()
    which.add_argument("--key", help="program id of the sample (default: the first)")
    which.add_argument("--index", type=int, default=0, help="position of the sample in the shard (default: %(default)s)")
    ins.set_defaults(run=_inspect)
    return parser


def _generate(args: argparse.Namespace) -> int:
    from inverse_tracr.zoo.generate import generate
    from inverse_tracr.zoo.manifest import ZooConfig

    try:
        config = ZooConfig(
            shard_size=args.shard_size,
            min_ops=args.min_ops,
            max_ops=args.max_ops,
            vocab_size=args.vocab_size,
            max_seq_len=args.max_seq_len,
            seed=args.seed,
            verify_inputs=args.verify_inputs,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    summary = generate(
        args.store,
        args.zoo,
        config,
        programs=args.programs,
        shards=args.shards,
        workers=args.workers,
        memory_limit_mb=args.memory_limit_mb,
        progress=not args.quiet,
    )
    for line in summary.lines():
        print(line)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from inverse_tracr.zoo.inspect import describe, find_sample

    sample, errors = find_sample(args.url, key=args.key, index=args.index)
    if sample is None:
        raise UserError(errors[0] if errors else f"no such sample in {args.url}")
    print(describe(sample))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Libraries (gcsfs, botocore) log their retries with tracebacks: only ours, unless --verbose.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("inverse_tracr").setLevel(logging.INFO if args.verbose else logging.WARNING)
    from inverse_tracr.zoo.manifest import ZooConfigError
    from inverse_tracr.zoo.generate import GenerationError
    from inverse_tracr.zoo.store import StoreError

    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; rerun the same command to continue", file=sys.stderr)
        return 130
    except (UserError, StoreError, ZooConfigError, GenerationError) as error:
        if args.verbose:
            raise
        print(f"inverse-tracr {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
