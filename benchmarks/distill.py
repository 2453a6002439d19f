"""Seconds per accepted student and acceptance, compressed and natural, on verified 4–8-op programs;
the thesis's loss comparison (Tables 6.1–6.3): layer-wise L2 alone vs L2 + cross-entropy, on
the teacher's residuals from vocabulary sequences vs random residual-like inputs; and what the
attention-pattern loss and the retry add.

Targets on the project's 2-core machine: <= 8 s wall per accepted compressed model with acceptance
>= 85 % of verified standard models; natural <= 60 s per accepted model. The source: 4–8 CPU-minutes
per compressed model, ~60 % accepted; ~10 min per natural model.

    python benchmarks/distill.py [--programs 20] [--workers 2] [--zoo-store DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.distill.stage import distill_zoo
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.config import ZooConfig

#: The thesis's comparison (one run per student, no attention loss), then what this recipe adds,
#: each on the same teachers (compressed students).
THESIS = {"attention_weight": 0.0, "attempts": 1}
LOSSES = {
    "L2, vocabulary inputs": DistillConfig(ce_weight=0.0, inputs="vocabulary", **THESIS),
    "L2, random inputs": DistillConfig(ce_weight=0.0, inputs="random", **THESIS),
    "L2 + CE, vocabulary inputs": DistillConfig(inputs="vocabulary", **THESIS),
    "L2 + CE, random inputs": DistillConfig(inputs="random", **THESIS),
    "L2 + CE + attention KL, vocabulary inputs, one run": DistillConfig(attempts=1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-losses", action="store_true", help="skip the loss comparison")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    teachers = ZooConfig(shard_size=args.programs, min_ops=4, max_ops=8, seed=2024)
    generate(str(root), "bench", teachers, programs=args.programs, workers=args.workers, progress=False)

    def run(name: str, config: DistillConfig) -> None:
        shutil.rmtree(root / "bench" / config.kind, ignore_errors=True)
        summary = distill_zoo(str(root), "bench", config, workers=args.workers, progress=False)
        rate = summary.accepted / summary.teachers
        print(
            f"| {name} | {summary.accepted}/{summary.teachers} ({rate:.0%}) | {summary.seconds_per_accepted:.2f} | "
            f"{summary.seconds:.0f} | {dict(summary.rejections)} |",
            flush=True,
        )

    print(f"{args.programs} verified 4-8-op programs, {args.workers} workers (wall time includes worker start-up and compiles)")
    print("| students | accepted | s per accepted (wall) | s total | rejections |\n|---|---|---|---|---|")
    run("compressed (x2)", DistillConfig(kind="compressed"))
    run("natural (x2)", DistillConfig(kind="natural"))
    if not args.no_losses:
        print("\nLoss comparison (compressed students):")
        print("| loss, inputs | accepted | s per accepted (wall) | s total | rejections |\n|---|---|---|---|---|")
        for name, config in LOSSES.items():
            run(name, config)
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
