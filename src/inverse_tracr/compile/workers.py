"""Worker processes that cannot take the pipeline down.

Each worker runs jobs one at a time in its own process. The parent enforces, per job:
- an adaptive timeout (`AdaptiveTimeout`): start from the thesis law 0.2 + (L/18)^4 s, then kill
  anything much slower than what most previous jobs needed;
- a memory cap: the worker's resident memory is read from /proc while it works;
- crash isolation: a worker that dies (segfault, OOM kill) is replaced and its job reported.
A killed or crashed job is an `Outcome` with a reason, like any rejection. Workers ignore Ctrl-C;
the parent terminates them when it stops, so nothing is left running.

Jobs are named "module:function" and imported in the worker, after the thread limits are set:
the parent never imports JAX or Tracr.
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from typing import Any

#: Thread pools sized for one job per core: several workers share the machine.
_WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
_POLL_SECONDS = 0.05
_STARTUP_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one job: its result, or why there is none."""

    key: Any
    result: Any = None
    reason: str | None = None  # None: success
    seconds: float = 0.0


class AdaptiveTimeout:
    """Time limit for a job of size L: the thesis law at first, then a multiple of a high quantile.

    Programs get slower to compile roughly as (L/18)^4; `factor` × the `quantile` of completed
    durations (kept sorted) only catches the pathological tail, so ordinary jobs are never killed
    (which keeps shards reproducible). `floor` guards against a fast start.
    """

    def __init__(self, quantile: float = 0.9, factor: float = 10.0, floor: float = 5.0, warmup: int = 20):
        self.quantile, self.factor, self.floor, self.warmup = quantile, factor, floor, warmup
        self._durations: list[float] = []

    @staticmethod
    def law(size: int) -> float:
        return 0.2 + (size / 18) ** 4

    def limit(self, size: int) -> float:
        law = self.floor + self.factor * self.law(size)
        if len(self._durations) < self.warmup:
            return law
        observed = self._durations[int(self.quantile * (len(self._durations) - 1))]
        return max(self.floor, self.factor * observed, self.law(size))

    def observe(self, seconds: float) -> None:
        bisect.insort(self._durations, seconds)


def _worker_main(job: str, conn: multiprocessing.connection.Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    os.environ.update(_WORKER_ENV)
    module, name = job.split(":")
    fn = getattr(importlib.import_module(module), name)
    try:
        conn.send("ready")
        while True:
            task = conn.recv()
            if task is None:
                return
            key, payload = task
            try:
                conn.send((key, fn(payload), None))
            except Exception as error:  # noqa: BLE001 - a job's failure is data, not a crash
                conn.send((key, None, f"error:{type(error).__name__}"))
    except (EOFError, OSError):  # the parent is gone (interrupted, killed): no one to answer
        return


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


#: A worker above this resident memory is killed and its job counted as failed (compiling a rare
#: program can take many GiB; the chart derives it from the pod's memory limit).
MEMORY_LIMIT_MB = 4096


class _Worker:
    def __init__(self, ctx, job: str):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(job, child), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(_STARTUP_SECONDS) or self.conn.recv() != "ready":
            self.kill()
            raise RuntimeError(f"worker for {job} did not start")
        self.task: tuple | None = None  # (key, size, started)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class GuardedPool:
    """Jobs on worker processes with per-job timeout, memory cap and crash isolation.

    `submit` a job to an idle worker, `poll` for finished ones; the caller decides what runs next.
    """

    def __init__(self, job: str, workers: int = 1, memory_limit_mb: int = MEMORY_LIMIT_MB, timeout: AdaptiveTimeout | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.job, self.memory_limit = job, memory_limit_mb * 2**20
        self.timeout = timeout or AdaptiveTimeout()
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self._workers.append(_Worker(self._ctx, job))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "GuardedPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.kill()
        self._workers = []

    @property
    def idle(self) -> int:
        return sum(worker.task is None for worker in self._workers)

    @property
    def busy(self) -> int:
        return len(self._workers) - self.idle

    def submit(self, key: Any, size: int, payload: Any) -> None:
        """Start a job on an idle worker (`size` sets its time limit)."""
        worker = next(w for w in self._workers if w.task is None)
        worker.task = (key, size, time.monotonic())
        worker.conn.send((key, payload))

    def poll(self, timeout: float = _POLL_SECONDS) -> list[Outcome]:
        """Outcomes of the jobs that finished (or were killed) within `timeout` seconds."""
        busy = [w for w in self._workers if w.task is not None]
        ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=timeout)
        outcomes = []
        for worker in busy:
            key, size, started = worker.task
            elapsed = time.monotonic() - started
            if worker.conn in ready:
                try:
                    _, result, reason = worker.conn.recv()
                except (EOFError, OSError):
                    outcomes.append(self._replace(worker, Outcome(key, reason="crash", seconds=elapsed)))
                    continue
                worker.task = None
                if reason is None:
                    self.timeout.observe(elapsed)
                outcomes.append(Outcome(key, result, reason, elapsed))
            elif not worker.process.is_alive():
                outcomes.append(self._replace(worker, Outcome(key, reason="crash", seconds=elapsed)))
            elif elapsed > self.timeout.limit(size):
                outcomes.append(self._replace(worker, Outcome(key, reason="timeout", seconds=elapsed)))
            elif _rss_bytes(worker.process.pid) > self.memory_limit:
                outcomes.append(self._replace(worker, Outcome(key, reason="memory", seconds=elapsed)))
        return outcomes

    def _replace(self, worker: _Worker, outcome: Outcome) -> Outcome:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self._ctx, self.job)
        return outcome
