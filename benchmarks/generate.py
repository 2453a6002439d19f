"""Verified programs per second for 4–8-op programs, with 1 and 2 workers.

Targets on the project's 2-core machine: >= 5 verified programs/s per worker and >= 1.8x from 1 to
2 workers. The source thesis reports ~4.6 unverified programs/s per thread; a naive verified
pipeline (stock Tracr compile + jitted forward per program) measured 2.4/s here.

    python benchmarks/generate.py [--programs 300]
"""

from __future__ import annotations

import argparse
import tempfile

from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.config import ZooConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=300)
    parser.add_argument("--shard-size", type=int, default=50)
    args = parser.parse_args()
    config = ZooConfig(shard_size=args.shard_size, min_ops=4, max_ops=8, seed=2024)
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as store:
            summary = generate(store, "bench", config, programs=args.programs, workers=workers, progress=False)
        rates[workers] = summary.steady_programs_per_second
        accepted = summary.programs / summary.candidates
        print(
            f"workers={workers}: {summary.programs} verified programs in {summary.seconds:.1f} s "
            f"= {summary.programs_per_second:.2f}/s overall, {summary.steady_programs_per_second:.2f}/s after "
            f"{summary.startup_seconds:.1f} s start-up ({summary.steady_programs_per_second / workers:.2f}/s per worker); "
            f"acceptance {accepted:.0%}; rejections {dict(summary.rejections)}"
        )
    print(f"speed-up 1 -> 2 workers: {rates[2] / rates[1]:.2f}x (target >= 1.8x); per worker with 1: {rates[1]:.2f}/s (target >= 5)")


if __name__ == "__main__":
    main()
