"""The exact reader on compiled models and compressed students: how many it reads, how exactly, how fast.

Models: a held-out zoo (generated here if absent: 1,000 programs of 4–8 ops, vocabulary {0..4},
length 5, seed 5151, which no other benchmark or test uses), compressed students distilled here
from its first `--student-shards` shards of 100 (distillation's defaults; ~3 s per student on a
core), Tracr's `lib` (at the vocabularies and lengths Tracr's tests use) and the hand-written
programs of `programs.handwritten`. Each model is read back from its weights alone (a student
unfolded into its teacher first: `compile.unfold`) and scored:

- read / refused: the reader returned a program, or raised `NotCompiledLayout`;
- exact: the reading is the sample's own canonical program (same id);
- functional: the reading's outputs equal the true program's on every input up to the model's
  length (a random sample beyond 5,000 sequences);
- wrong: read but not functional — an unflagged wrong answer (target 0);
- certified (students): the reading, compiled again, folds into the student's weights
  (`compile.projection`), which is what verifies a student's answer in `decompile`;
- ms per model: reading alone, then a compiled model's reading plus its check against the forward
  pass, a student's reading compiled again and projected onto the student.

Targets: functional 100 % and exact >= 99 % of compiled models read, 0 wrong, <= 50 ms per model on
one core; every student read certified.

    python benchmarks/read.py [--store /tmp/inverse-tracr-bench] [--programs 1000] [--student-shards 1]
"""

from __future__ import annotations

import os

for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")  # "ms per model on one core"

import argparse  # noqa: E402
import collections  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Iterator  # noqa: E402

from inverse_tracr.compile import reader  # noqa: E402
from inverse_tracr.compile.check import inputs_for  # noqa: E402
from inverse_tracr.compile.compiler import compile_program  # noqa: E402
from inverse_tracr.compile.model import CompiledModel, Layout  # noqa: E402
from inverse_tracr.compile.projection import projects  # noqa: E402
from inverse_tracr.distill.config import DistillConfig  # noqa: E402
from inverse_tracr.distill.stage import distill_zoo  # noqa: E402
from inverse_tracr.evaluate.metrics import functionally_equivalent  # noqa: E402
from inverse_tracr.programs.handwritten import HANDWRITTEN  # noqa: E402
from inverse_tracr.programs.program import Program  # noqa: E402
from inverse_tracr.programs.tracr_lib import LIB  # noqa: E402
from inverse_tracr.zoo.generate import generate  # noqa: E402
from inverse_tracr.zoo.config import ZooConfig  # noqa: E402
from inverse_tracr.zoo.shards import Reader, finished_shards, read_marker, shard_urls  # noqa: E402
from inverse_tracr.zoo.store import Store  # noqa: E402

HELD_OUT = ZooConfig(shard_size=100, min_ops=4, max_ops=8, seed=5151)


def cases(store: str, programs: int, student_shards: int) -> Iterator[tuple[str, str, Program, CompiledModel]]:
    """(group, name, true program, model) for the held-out zoo, its students, lib and hand-written programs."""
    generate(store, "read-held-out", HELD_OUT, programs=programs, workers=os.cpu_count() or 1, progress=False)
    for sample in Reader(shard_urls(Store(store), "read-held-out")):
        yield "held-out zoo", sample.key, sample.program, CompiledModel(sample.params, Layout.from_json(sample.meta["model"]))
    if student_shards:
        distill_zoo(store, "read-held-out", DistillConfig(kind="compressed"), shards=range(student_shards), workers=os.cpu_count() or 1, progress=False)
        for sample in Reader(shard_urls(Store(store), "read-held-out", "compressed")):
            yield "students", sample.key, sample.program, CompiledModel(sample.params, Layout.from_json(sample.meta["model"]))
    for group, programs_ in (("lib", LIB), ("hand-written", HANDWRITTEN)):
        for name, entry in programs_.items():
            program = entry.program()
            yield group, name, program, compile_program(program)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="/tmp/inverse-tracr-bench", help="where the held-out zoo lives (made if absent)")
    parser.add_argument("--programs", type=int, default=1000, help="held-out programs")
    parser.add_argument("--student-shards", type=int, default=1, help="held-out shards (of 100) to distil into compressed students and read (0: none)")
    parser.add_argument("--verbose", action="store_true", help="print every refusal and wrong or inexact reading")
    args = parser.parse_args()

    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    read_ms: dict[str, list[float]] = collections.defaultdict(list)  # by kind: compiled models, students
    checked_ms: dict[str, list[float]] = collections.defaultdict(list)
    refusals: collections.Counter = collections.Counter()
    for group, name, program, model in cases(args.store, args.programs, args.student_shards):
        c = counts[group]
        c["models"] += 1
        start = time.perf_counter()
        try:
            reading = reader.read(model, verify=False)
            middle = time.perf_counter()
            if model.layout.readout:  # a student: its weights check the reading
                c["certified"] += projects(compile_program(reading.program), model)
            else:
                reader.read(model)
            end = time.perf_counter()
        except reader.NotCompiledLayout as refusal:
            c["refused"] += 1
            refusals[refusal.why[:110]] += 1
            if args.verbose:
                print(f"refused {name}: {refusal}\n{program}")
            continue
        kind = "students" if model.layout.readout else "compiled models"
        read_ms[kind].append(1000 * (middle - start))
        checked_ms[kind].append(1000 * (end - middle))
        c["read"] += 1
        exact = reading.program == program
        ok = exact or functionally_equivalent(program, reading.program, inputs_for(program.vocab, program.max_seq_len)[0])
        c["exact"] += exact
        c["functional"] += ok
        c["wrong"] += not ok
        if args.verbose and not exact:
            print(f"{'INEXACT' if ok else 'WRONG'} {name}:\n{program}\nread as\n{reading.program}")

    print(f"{'group':14} {'models':>6} {'read':>5} {'refused':>7} {'wrong':>5} {'exact':>7} {'functional':>10} {'certified':>9}")
    for group, c in counts.items():
        read = max(c["read"], 1)
        certified = f"{100 * c['certified'] / read:8.1f}%" if group == "students" else f"{'-':>9}"
        print(f"{group:14} {c['models']:6d} {c['read']:5d} {c['refused']:7d} {c['wrong']:5d} "
              f"{100 * c['exact'] / read:6.1f}% {100 * c['functional'] / read:9.1f}% {certified}")
    q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    for kind, times in read_ms.items():
        checks = checked_ms[kind]
        check = "compiling the reading and projecting it onto the student" if kind == "students" else "reading + check against the forward pass (target <= 50 ms)"
        print(f"ms per model ({kind}): reading {statistics.median(times):.1f} median / {q(times, 0.9):.1f} p90; "
              f"{check} {statistics.median(checks):.1f} median / {q(checks, 0.9):.1f} p90")
    for why, n in refusals.most_common(8):
        print(f"  refused x{n}: {why}")
    # The zoo keeps only samples whose label the reader reads back from their weights: say how many
    # candidates that removed, so the held-out figures above are not read as unconditional.
    store = Store(args.store)
    rejected: collections.Counter = collections.Counter()
    for shard in finished_shards(store, "read-held-out", "standard"):
        rejected.update(read_marker(store, "read-held-out", "standard", shard)["stats"]["rejections"])
    print(f"held-out zoo generation rejected {rejected['label_not_read_back']} candidates whose label was not read back and "
          f"{rejected['unreadable_weights']} whose weights were unreadable (of {sum(rejected.values())} rejections: {dict(rejected)})")


if __name__ == "__main__":
    main()
