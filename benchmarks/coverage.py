"""Coverage of hand-written Tracr programs: how many `Program.from_rasp` represents and round-trips.

For each set of programs it prints how many there are, the share stock Tracr compiles, the share
`Program.from_rasp` represents, the share that round-trips, and the reasons for the rest, grouped
by the first line of each error. Target: >= 95 % of what stock Tracr compiles round-trips.

A program round-trips when

- `Program.from_json(p.to_json()) == p` and `Program.from_rasp(p.to_rasp()) == p`;
- compiling `p` (`compile_program`) gives exactly the parameters stock Tracr gives for the user's
  own RASP (their lambdas and labels) renamed to the canonical names, as
  `tests/programs/test_from_rasp.py::test_user_programs_round_trip_and_compile_to_the_users_weights` checks;
- `p.evaluate` equals `rasp.evaluate` of the user's program, and the compiled model's outputs
  (`forward.run`) equal it wherever the user's program defines a value, on every input up to
  length 3 plus 200 random full-length ones. Where every input up to length 3 is more than
  `--max-exhaustive` inputs (a vocabulary of more than ~40 values), it is every input up to the
  longest length that fits plus as many random length-3 ones as fit.

When the parameters are exactly stock Tracr's but the compiled outputs still differ from the
user's `rasp.evaluate`, stock Tracr's own model is wrong on that program (Tracr's numerical MLPs
approximate, or its categorical Aggregate of a selector that selects several keys averages), and
the failure is reported as Tracr's, not ours.

The sets:

- `tracr.compiler.lib`, always: the 13 programs of `inverse_tracr.programs.tracr_lib.LIB`, at the
  vocabularies and lengths of Tracr's own tests.
- `--programs PATH`: a checkout of InterpBench (Gupta et al. 2024): 129 hand-written Tracr cases,
  Tracr's lib as people rewrote it and, under the same function names, 94 of the 118 programs of
  TracrBench (Thurnherr & Scheurer 2024; `dataset/make_*` in its repository). One Python
  file per case under `circuits_benchmark/benchmark/cases/`, each a class with `get_program()`
  (building the RASP), `get_vocab()` and `get_max_seq_len()` (BOS included; Tracr gets one less,
  as InterpBench compiles it). Its two IOI cases are not Tracr programs and are left out. Measured at

      git clone https://github.com/FlyingPumba/InterpBench
      git -C InterpBench checkout 220791e4a9cd29957ed5edfa445e7c09152d7298   # 2024-10-29

  (TracrBench's own repository, HannesThurnherr/automated_generation_of_interpretability_testbeds,
  has no program as a runnable file: compiled weights, a JSON of tasks and LLM transcripts.)

This script *imports and runs the code of the checkout you point it at* (each case module, and its
`vocabs.py`, `common_programs.py` and `program_evaluation_type.py`): it is a benchmark for a
developer, on a checkout they chose. The cases' heavy base class (torch, transformer_lens, iit) is
replaced by a stub that keeps only what the cases call (the defaults: max_seq_len 10). Nothing of
the checkout is copied here. Each program runs under a `signal.alarm` timeout (`--timeout`, 60 s).

    python benchmarks/coverage.py [--programs PATH] [--timeout 60] [--verbose] [--only NAME ...]

Measured (2 CPU cores, ~65 s in all): lib 13/13 compile, represent and round-trip; InterpBench
129/129 compile and are represented, 124/129 (96.1 %) round-trip. The rest: 4 whose parameters are
not stock Tracr's because the canonical form merges distinct user expressions whose lines are
identical once intermediate values are ranks (cases 109, 117, 119, 130: stock Tracr compiles every
expression object into its own block), and 1 where stock Tracr's own model is off (case 39,
frac_prevs at length 59: 1.1e-05 for an exact 0).
"""

from __future__ import annotations

import os

for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import itertools  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
from tracr.compiler import compiling  # noqa: E402
from tracr.rasp import rasp  # noqa: E402

from inverse_tracr.compile import forward  # noqa: E402
from inverse_tracr.compile.compiler import compile_as_written, compile_program  # noqa: E402
from inverse_tracr.compile.fast_init import fast_init  # noqa: E402
from inverse_tracr.compile.model import BOS, PAD  # noqa: E402
from inverse_tracr.programs import Program, ProgramError  # noqa: E402
from inverse_tracr.programs.from_rasp import lines_from_rasp  # noqa: E402
from inverse_tracr.programs.tracr_lib import LIB  # noqa: E402

INTERPBENCH = "FlyingPumba/InterpBench@220791e4a9cd29957ed5edfa445e7c09152d7298"


@dataclasses.dataclass
class Case:
    name: str
    make: Callable[[], rasp.SOp] | None
    vocab: tuple = ()
    max_seq_len: int = 0
    load_error: str | None = None  # the case could not even be built from its file


@dataclasses.dataclass
class Outcome:
    compiled: bool = False  # stock Tracr compiles it
    represented: bool = False  # Program.from_rasp reads it
    round_trips: bool = False
    stage: str = ""  # where it stopped: load, tracr, represent, round trip, timeout
    reason: str = ""
    ours: bool = False  # a defect of the representation (not of the program or of Tracr)
    detail: str = ""  # printed with --verbose


# --- the sets ---------------------------------------------------------------------------------


def lib_cases() -> list[Case]:
    return [Case(f"lib:{name}", entry.make, tuple(entry.vocab), entry.max_seq_len) for name, entry in LIB.items()]


def interpbench_cases(root: Path, timeout: int) -> list[Case]:
    """Every Tracr case of an InterpBench checkout, imported from its files (the files that do not
    define a `TracrBenchmarkCase`, the IOI cases, are not Tracr programs and are left out)."""
    package = root / "circuits_benchmark"
    cases_dir = package / "benchmark" / "cases"
    if not cases_dir.is_dir():
        raise SystemExit(f"{root} is not an InterpBench checkout (no {cases_dir.relative_to(root)})")
    base = _install_stubs(package)
    files = sorted(cases_dir.glob("case_*.py"), key=lambda p: (not p.stem[5:].isdigit(), int(p.stem[5:]) if p.stem[5:].isdigit() else 0, p.stem))
    out: list[Case] = []
    for path in files:
        if "TracrBenchmarkCase" not in path.read_text(encoding="utf-8"):
            continue
        name = f"interpbench:{path.stem}"
        try:
            with _deadline(timeout):
                module = _import(f"circuits_benchmark.benchmark.cases.{path.stem}", path)
                classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, base) and c is not base and c.__module__ == module.__name__]
                if not classes:
                    out.append(Case(name, None, load_error="no TracrBenchmarkCase subclass in the file"))
                    continue
                instance = classes[0]()
                out.append(Case(name, instance.get_program, tuple(instance.get_vocab()), instance.get_max_seq_len() - 1))
        except _Timeout:
            out.append(Case(name, None, load_error=f"importing the case took over {timeout} s"))
        except Exception as error:  # noqa: BLE001 - a benchmark reports every failure and goes on
            out.append(Case(name, None, load_error=f"importing the case: {type(error).__name__}: {_first_line(error)}"))
    return out


def _install_stubs(package: Path) -> type:
    """Packages of the checkout without their __init__s, and light stand-ins for the modules whose
    imports (torch, transformer_lens, iit) the cases do not need to build their programs."""
    for dotted, folder in (("circuits_benchmark", package), ("circuits_benchmark.benchmark", package / "benchmark"),
                           ("circuits_benchmark.benchmark.cases", package / "benchmark" / "cases"),
                           ("circuits_benchmark.transformers", package / "transformers")):
        module = types.ModuleType(dotted)
        module.__path__ = [str(folder)]
        sys.modules[dotted] = module

    class TracrBenchmarkCase:
        def get_max_seq_len(self) -> int:  # InterpBench's default, BOS included
            return 10

        def get_min_seq_len(self) -> int:
            return 4

        def supports_causal_masking(self) -> bool:
            return True

        def is_trivial(self) -> bool:
            return False

        def get_task_description(self) -> str:
            return ""

    stub = types.ModuleType("circuits_benchmark.benchmark.tracr_benchmark_case")
    stub.TracrBenchmarkCase = TracrBenchmarkCase
    sys.modules[stub.__name__] = stub
    hooked = types.ModuleType("circuits_benchmark.transformers.hooked_tracr_transformer")
    hooked.HookedTracrTransformerBatchInput = list
    sys.modules[hooked.__name__] = hooked
    return TracrBenchmarkCase


def _import(dotted: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(dotted, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[dotted] = module
    spec.loader.exec_module(module)
    return module


# --- one program ------------------------------------------------------------------------------


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int):
    """Raise _Timeout in this (main) thread after `seconds`."""

    def alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _Fail(Exception):
    def __init__(self, stage: str, reason: str, ours: bool = False, detail: str = ""):
        super().__init__(reason)
        self.stage, self.reason, self.ours, self.detail = stage, reason, ours, detail


def measure(case: Case, timeout: int, n_random: int, max_exhaustive: int) -> Outcome:
    outcome = Outcome()
    if case.load_error is not None:
        outcome.stage, outcome.reason = "load", case.load_error
        return outcome

    try:
        with _deadline(timeout):
            _measure(case, outcome, n_random, max_exhaustive)
        outcome.round_trips = True
    except _Timeout:
        outcome.stage, outcome.reason = "timeout", f"over {timeout} s"
    except _Fail as fail:
        outcome.stage, outcome.reason, outcome.ours, outcome.detail = fail.stage, fail.reason, fail.ours, fail.detail
    except Exception as error:  # noqa: BLE001 - RecursionError, MemoryError…: reported, and on to the next
        outcome.stage, outcome.reason = "crash", f"{type(error).__name__}: {_first_line(error)}"
    return outcome


def _measure(case: Case, outcome: Outcome, n_random: int, max_exhaustive: int) -> None:
    try:
        sop = case.make()
    except Exception as error:  # noqa: BLE001
        raise _Fail("load", f"building the program: {_first_line(error)}") from None
    vocab, max_seq_len = case.vocab, case.max_seq_len

    try:
        with fast_init():  # stock Tracr's parameters, without XLA (see fast_init)
            compiling.compile_rasp_to_model(sop, set(vocab), max_seq_len, compiler_bos=BOS, compiler_pad=PAD)
        outcome.compiled = True
    except _Timeout:
        raise
    except Exception as error:  # noqa: BLE001
        tracr_error = f"{type(error).__name__}: {_first_line(error)}"
    else:
        tracr_error = None

    try:
        program = Program.from_rasp(sop, vocab, max_seq_len)
        outcome.represented = True
    except ProgramError as error:
        reason = _first_line(error)
        if tracr_error is not None:  # both refuse: the program's (or Tracr's) limit, not ours
            raise _Fail("tracr", f"{tracr_error}  [from_rasp: {reason}]") from None
        raise _Fail("represent", reason, ours=True) from None
    except _Timeout:
        raise
    except Exception as error:  # noqa: BLE001
        raise _Fail("represent", f"from_rasp crashed: {type(error).__name__}: {_first_line(error)}", ours=True) from None
    if tracr_error is not None:
        raise _Fail("tracr", f"{tracr_error}  [from_rasp accepted it]", ours=True)

    try:
        _round_trip(sop, program, vocab, max_seq_len, n_random, max_exhaustive)
    except (_Fail, _Timeout):
        raise
    except Exception as error:  # noqa: BLE001
        raise _Fail("round trip", f"crashed: {type(error).__name__}: {_first_line(error)}", ours=True) from None


def _round_trip(sop: rasp.SOp, program: Program, vocab: tuple, max_seq_len: int, n_random: int, max_exhaustive: int) -> None:
    if Program.from_json(program.to_json()) != program:
        raise _Fail("round trip", "JSON round trip gives another program", ours=True)
    if Program.from_rasp(program.to_rasp(), vocab, max_seq_len) != program:
        raise _Fail("round trip", "RASP round trip gives another program", ours=True)
    model = compile_program(program)

    # Stock Tracr on the user's own RASP, renamed to the canonical names: exactly our parameters.
    theirs = compile_as_written(sop, vocab, max_seq_len)
    expressions = len(lines_from_rasp(sop, vocab, max_seq_len)[0])
    same_keys = theirs.params.keys() == model.params.keys()
    if not same_keys or any(not np.array_equal(np.asarray(theirs.params[k]), np.asarray(model.params[k])) for k in model.params):
        why = "other layers" if not same_keys else "other values"
        width, stock_width = len(model.layout.residual_labels), len(theirs.layout.residual_labels)
        if width != stock_width:
            why = "a narrower residual stream" if width < stock_width else "a wider residual stream"
        if len(program.lines) < expressions:
            why += ": distinct user expressions merged into one line"
        raise _Fail("round trip", f"parameters differ from stock Tracr's ({why})", ours=True,
                    detail=f"residual {width} vs stock {stock_width} dimensions; {len(program.lines)} lines for {expressions} user expressions")

    inputs = _inputs(program.vocab, max_seq_len, n_random, max_exhaustive)
    compiled = forward.run(model, inputs)
    for xs, got in zip(inputs, compiled):
        try:
            want = rasp.evaluate(sop, xs)
        except Exception:  # noqa: BLE001 - the user's program defines no value here
            continue
        ours = program.evaluate(xs)
        if not all(_same(a, b) for a, b in zip(ours, want)):
            raise _Fail("round trip", f"Program.evaluate differs from the user's rasp.evaluate (e.g. on {xs!r})", ours=True)
        if not all(_same(c, b) for c, b in zip(got, want) if b is not None):
            # the parameters are stock Tracr's: its own model computes this
            raise _Fail("round trip", "stock Tracr's compiled model differs from rasp.evaluate (the parameters are equal)",
                        detail=f"on an input of length {len(xs)}: {_differences(got, want)}")


def _inputs(vocab: tuple, max_seq_len: int, n_random: int, max_exhaustive: int, seed: int = 0) -> list[list]:
    """Every input up to length 3 (or up to the longest length that keeps them under
    `max_exhaustive`, plus random length-3 ones up to it), and `n_random` random full-length ones."""
    rng = random.Random(seed)
    longest = min(3, max_seq_len)
    out: list[list] = []
    for length in range(1, longest + 1):
        if len(out) + len(vocab) ** length <= max_exhaustive:
            out += [list(xs) for xs in itertools.product(vocab, repeat=length)]
        else:
            out += [[rng.choice(vocab) for _ in range(length)] for _ in range(max(0, max_exhaustive - len(out)))]
            break
    return out + [[rng.choice(vocab) for _ in range(max_seq_len)] for _ in range(n_random)]


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-5 + 0.005 * abs(b)
    return a == b


def _differences(got: list, want: list, most: int = 3) -> str:
    pairs = [f"position {i}: {g!r} for {w!r}" for i, (g, w) in enumerate(zip(got, want)) if w is not None and not _same(g, w)]
    return "; ".join(pairs[:most]) + (f"; … ({len(pairs)} positions)" if len(pairs) > most else "")


def _first_line(error: BaseException) -> str:
    """The first line of an error; with the next one where the first only introduces a list."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    text = lines[0] + (" " + lines[1] if lines[0].endswith(":") and len(lines) > 1 else "")
    return text[:200]


def _group(reason: str) -> str:
    """A reason without the names and values particular to one program."""
    reason = re.sub(r"(Map|SequenceMap|Select|Aggregate|SelectorWidth|LinearSequenceMap) '[^']*'", r"\1 '…'", reason)
    reason = re.sub(r"\(e\.g\. on .*\)", "(e.g. on …)", reason)
    reason = re.sub(r"\b(over|got) [^ ]+ s\b", r"\1 … s", reason)
    return re.sub(r"_\d+\b", "", reason)


# --- report -------------------------------------------------------------------------------------


def report(title: str, cases: list[Case], args: argparse.Namespace) -> dict[str, Outcome]:
    start = time.perf_counter()
    outcomes: dict[str, Outcome] = {}
    for case in cases:
        t0 = time.perf_counter()
        outcome = outcomes[case.name] = measure(case, args.timeout, args.random, args.max_exhaustive)
        if args.verbose:
            state = "round-trips" if outcome.round_trips else f"{outcome.stage}: {outcome.reason}" + ("  [OUR DEFECT]" if outcome.ours else "")
            state += f"  ({outcome.detail})" if outcome.detail else ""
            print(f"  {case.name:32s} {time.perf_counter() - t0:6.1f} s  {state}", flush=True)
    n = len(cases)
    compiled = sum(o.compiled for o in outcomes.values())
    represented = sum(o.represented for o in outcomes.values())
    trips = sum(o.round_trips for o in outcomes.values())
    trips_compiled = sum(o.round_trips and o.compiled for o in outcomes.values())
    tracr_wrong = sum(o.compiled and not o.round_trips and not o.ours and o.stage == "round trip" for o in outcomes.values())

    def pct(k: int, of: int) -> str:
        return f"{k:4d}/{of:<4d} {100 * k / of:5.1f} %" if of else f"{k:4d}/{of:<4d}   n/a"

    print(f"\n{title}: {n} programs ({time.perf_counter() - start:.0f} s)")
    print(f"  stock Tracr compiles            {pct(compiled, n)}")
    print(f"  Program.from_rasp represents    {pct(represented, n)}")
    print(f"  round-trips                     {pct(trips, n)}")
    print(f"  round-trips, of Tracr-compiled  {pct(trips_compiled, compiled)}   (target >= 95 %)")
    if tracr_wrong:
        print(f"    of which Tracr's own model is wrong on {tracr_wrong}: "
              f"{pct(trips_compiled, compiled - tracr_wrong)} of those it compiles correctly")
    groups: collections.Counter = collections.Counter()
    examples: dict[tuple, str] = {}
    for name, o in outcomes.items():
        if not o.round_trips:
            key = (o.stage, ("OUR DEFECT: " if o.ours else "") + _group(o.reason))
            groups[key] += 1
            examples.setdefault(key, name)
    if groups:
        print("  the rest, by reason (count, stage: first line of the error, e.g. one program):")
        for (stage, reason), count in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"    {count:4d}  {stage}: {reason}  (e.g. {examples[(stage, reason)]})")
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=Path, help="a checkout of InterpBench (see above)")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per program")
    parser.add_argument("--random", type=int, default=200, help="random full-length inputs per program")
    parser.add_argument("--max-exhaustive", type=int, default=60_000, help="most inputs of length <= 3 per program")
    parser.add_argument("--only", nargs="*", help="measure only these programs (names as printed)")
    parser.add_argument("--verbose", action="store_true", help="print every program's outcome")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)  # Tracr warns about SequenceMaps of one variable

    start = time.perf_counter()
    sets = [("tracr.compiler.lib", lib_cases())]
    if args.programs is not None:
        sets.append((f"InterpBench ({args.programs})", interpbench_cases(args.programs.resolve(), args.timeout)))
    for title, cases in sets:
        if args.only:
            cases = [c for c in cases if c.name in args.only or c.name.split(":", 1)[1] in args.only]
            if not cases:
                continue
        report(title, cases, args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
