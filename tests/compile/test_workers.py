"""Guarded workers: a slow, crashing or memory-hungry job is killed and reported; the pool goes on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import cli_env

from inverse_tracr.compile.workers import AdaptiveTimeout, GuardedPool


def _run(pool: GuardedPool, tasks):
    tasks, outcomes = list(tasks), {}
    while tasks or pool.busy:
        while tasks and pool.idle:
            pool.submit(*tasks.pop(0))
        for outcome in pool.poll():
            outcomes[outcome.key] = outcome
    return outcomes


def test_adaptive_timeout_starts_from_the_thesis_law_then_follows_observed_times():
    timeout = AdaptiveTimeout(quantile=0.9, factor=10, floor=1.0, warmup=5)
    assert timeout.law(18) == 1.2 and timeout.limit(18) == 1.0 + 10 * 1.2
    for seconds in [0.1, 0.1, 0.1, 0.1, 0.2]:
        timeout.observe(seconds)
    assert timeout.limit(4) == 1.0  # floor: 10 x p90 (0.1 s) is below it
    for _ in range(20):
        timeout.observe(0.5)
    assert timeout.limit(4) == 5.0  # 10 x p90


def test_pool_survives_timeouts_crashes_and_errors():
    timeout = AdaptiveTimeout(floor=1.0, factor=0.0, warmup=10**6)  # limit = 1 s
    with GuardedPool("worker_jobs:sleep", workers=2, timeout=timeout) as pool:
        started = time.monotonic()
        outcomes = _run(pool, [("fast", 1, 0.01), ("slow", 1, 30), ("also fast", 1, 0.01)])
        assert time.monotonic() - started < 15
        assert outcomes["fast"].result == 0.01 and outcomes["fast"].reason is None
        assert outcomes["slow"].reason == "timeout" and outcomes["slow"].seconds >= 1.0
        assert outcomes["also fast"].result == 0.01
        assert _run(pool, [("after", 1, 0.02)])["after"].result == 0.02  # the killed worker was replaced
    with GuardedPool("worker_jobs:crash", workers=1) as pool:
        assert _run(pool, [("c", 1, None)])["c"].reason == "crash"
    with GuardedPool("worker_jobs:fail", workers=1) as pool:
        assert _run(pool, [("f", 1, None)])["f"].reason == "error:ValueError"


def test_pool_kills_a_worker_over_its_memory_cap():
    with GuardedPool("worker_jobs:hog", workers=1, memory_limit_mb=300) as pool:
        outcome = _run(pool, [("hog", 1, 600)])["hog"]
    assert outcome.reason == "memory"


def test_a_worker_whose_parent_is_gone_exits_quietly():
    """An interrupted parent stops waiting for a starting worker; the worker must not print a
    traceback into the interrupted command's output (it did: BrokenPipeError on "ready")."""
    script = """
import multiprocessing
from inverse_tracr.compile.workers import _worker_main
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    worker = ctx.Process(target=_worker_main, args=("worker_jobs:echo", child))
    worker.start()
    child.close()
    parent.close()
    worker.join()
    print("exit", worker.exitcode)
"""
    tests = str(Path(__file__).parents[1])
    result = subprocess.run([sys.executable, "-c", script], cwd=tests, env=cli_env(PYTHONPATH=tests), capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["exit", "0"] and result.stderr == ""
