"""Fitting a candidate's tables (and arguments) to a model's behaviour.

The meta-model often gets a program's skeleton right (operations, operands) and a table entry or
two wrong: of the held-out programs its search missed, a third had the right skeleton. But every
table entry is something the model computes, and the model can be run, so the model itself can
choose the entry:

- the **output line**'s table (a categorical Map or SequenceMap) is read off the model: wherever
  the candidate's operands hold a value (a pair), the model's output there is that entry — by
  majority, since a wrong earlier line misleads some inputs; where the model writes nothing, the
  entry is undefined; a SequenceMap whose table so read ignores one operand is a Map of the other;
- **every other entry** is changed to each other value its line already makes (so that every type,
  and the size of every table that reads the line, stays as it is) and a Select's entry is flipped;
  the change that agrees best is kept while it agrees better with the model;
- where no single entry helps, a line is **rewired** — one operand replaced by an earlier variable
  of the same kind and as many values (the meta-model's commonest error after a wrong function is
  a wrong argument) — or its whole table is **swapped** for each library function of its operation
  (two entries that must change together: LT, not GT; or values the line should not make); the
  first line, from the output back, where the best such move agrees better takes it, and fitting
  starts again from there. Before those, the **output line is rebuilt**: a Map or SequenceMap of
  any other earlier variables, its table read off the model — where the output's operands are
  wrong, its table is too, and no single move helps. Last of all, when nothing else helps, an
  output the meta-model did not make a table gets one: a Map or SequenceMap of any variables, the
  output's own too, **added after it** (the meta-model's commonest error on weak models is a
  program one line short).

While the output is a table read off the model, every trial upstream reads it again for the lines
it tries: a change upstream changes which table fits, and judged with the old one the right change
looks wrong.

Every step must agree strictly better, so fitting ends, at the latest when the time is up.

A trial evaluates only the lines downstream of the changed one, on arrays kept from the last
accepted program, and is scored on a random sample of the inputs (`QUICK_INPUTS`); the change it
picks is kept only if the program then agrees better on every input (else the next best, up to
`KEPT_TRIED`); at the end the output's table is read once more on every input, for the keys the
sample never held. A trial costs about a millisecond (4-line programs, vocabulary 5, length 5, 2
cores). The result is only a candidate: `decompile` weighs it like any other.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from inverse_tracr.compile.check import Agreement, Behaviour
from inverse_tracr.programs import Program, ProgramError, library, ops
from inverse_tracr.programs.batch import Batch, batch_of, inputs, run_line, table_index, visible_keys
from inverse_tracr.programs.program import Line
from inverse_tracr.programs.values import VarType

#: Inputs a trial is scored on (of 3,905 for vocabulary 5 and length 5): fitting Tracr's
#: frac_prevs, hist and a SelectorWidth back from a wrong predicate took 0.14–0.37 s instead of 0.35–1.46 s.
QUICK_INPUTS = 512
#: The best changes on the sample that `fit_line` checks on every input, best first, until one agrees better.
KEPT_TRIED = 3


@dataclasses.dataclass
class Fitted:
    program: Program
    agreement: Agreement
    trials: int  # programs evaluated


def fit(program: Program, behaviour: Behaviour, deadline: float) -> Fitted | None:
    """`program` with its tables fitted to `behaviour` (see the module docstring), or None when
    nothing agreed better; stops at `deadline` (`time.perf_counter()`)."""
    try:
        state = _State(program, behaviour)
    except (KeyError, ValueError, TypeError):  # inputs the program cannot read
        return None
    start = state.agreement.agreement
    while time.perf_counter() < deadline:
        read = state.read_output()
        if read is not None:  # the output's type may have changed: start again from the program read
            state = state.restart(read)
        passes_improve = True
        while passes_improve:  # a pass visits every line, from the output back
            passes_improve = any([state.fit_line(i, deadline) for i in reversed(range(len(state.lines)))])  # noqa: C419 - every line
        lines = reversed(range(len(state.lines)))
        moved = state.rebuild_output(deadline) or next(
            (p for i in lines for move in (state.rewire, state.swap_function) if (p := move(i, deadline)) is not None), None
        ) or state.rebuild_output(deadline, anything=True)
        if moved is None:
            break
        state = state.restart(moved)
    # The output's table was read on the sample: keys it never holds kept their old entries.
    program, agreement = state.program, state.agreement
    whole = _State(program, behaviour, state.trials, quick=len(behaviour.inputs))
    if (read := whole.read_output()) is not None:
        program, agreement = read, whole.agreement
    if agreement.agreement <= start:
        return None
    return Fitted(program, agreement, whole.trials)


class _State:
    """The program being fitted: its lines (types fixed), each variable's values on a sample of the
    inputs, and how far it agrees with the model — on the sample (`score`, what trials are compared
    with) and on every input (`agreement`, what a change must beat to be kept)."""

    def __init__(self, program: Program, behaviour: Behaviour, trials: int = 0, quick: int = QUICK_INPUTS):
        # Trials are scored on a sample of the inputs; a change is kept only if it agrees better on all.
        self.full, self.behaviour = behaviour, behaviour.sample(quick)
        self.types, self.ranked, self.trials = program.types, program.ranked, trials
        self.lines = list(program.lines)
        index = {line.ret: i for i, line in enumerate(self.lines)}
        self.downstream = [[j for j in range(i + 1, len(self.lines)) if self._reads(j, i, index)] for i in range(len(self.lines))]
        self.rows, self.tokens = self.behaviour.tokens(program.types["tokens"])
        self.visible = visible_keys(program, self.tokens.shape[1])
        #: Every variable's values for the current lines, and per line the inputs it leaves to
        #: rasp.evaluate (`batch.run_line`).
        self.env, self.flags = inputs(self.tokens), {}
        self._adopt(program, range(len(self.lines)))
        self.agreement = behaviour.agreement(program)

    def restart(self, program: Program) -> "_State":
        """A state for `program`, whose types may differ from this one's."""
        return _State(program, self.full, self.trials)

    def _reads(self, j: int, i: int, index: dict[str, int]) -> bool:
        """Whether line j reads line i's variable, directly or through other lines."""
        stack, seen = list(self.lines[j].operands), set()
        while stack:
            var = stack.pop()
            if var == self.lines[i].ret:
                return True
            if var in index and var not in seen:
                seen.add(var)
                stack.extend(self.lines[index[var]].operands)
        return False

    def _adopt(self, program: Program, changed) -> None:
        self.program = program
        for j in changed:
            line = self.lines[j]
            self.env[line.ret], self.flags[line.ret] = run_line(line, self.env, self.types, self.visible)
        self.score = self.behaviour.agreement(program, self._batch(self.env, self.flags)).agreement

    def _batch(self, env: dict[str, np.ndarray], flags: dict[str, np.ndarray | int]) -> Batch:
        return batch_of(self.rows, self.tokens, env[self.lines[-1].ret], functools.reduce(np.maximum, flags.values(), 0))

    def _trial(self, i: int, line: Line) -> tuple[float, list[Line]]:
        """The agreement on the sample with line i replaced by `line` (of the same type), and the
        lines tried: an output table read off the model (`read_output`) is read again for them —
        else a change upstream is judged by a table read for the lines it changes, and the right
        change looks wrong where the table must change with it."""
        self.trials += 1
        lines = list(self.lines)
        lines[i] = line
        env, flags = dict(self.env), dict(self.flags)
        for j in [i, *self.downstream[i]]:
            env[lines[j].ret], flags[lines[j].ret] = run_line(lines[j], env, self.types, self.visible)
        batch = self._batch(env, flags)
        if batch.irregular.any():  # only rasp can say
            try:
                program = Program(lines, self.program.vocab, self.program.max_seq_len, self.program.causal)
            except ProgramError:
                return -1.0, lines
            return self.behaviour.agreement(program, batch).agreement, lines
        if i < len(lines) - 1 and self._table_output():
            out = lines[-1]
            table, score = self._read(out.op, out.operands, out.fn, env)
            lines[-1] = out._replace(fn=table)
            return score, lines
        return self.behaviour.agreement(self.program, batch).agreement, lines

    def fit_line(self, i: int, deadline: float) -> bool:
        """Change line i's table one entry at a time, each time the change that agrees best, while
        that agrees better. (Taking the first change that helps gets stuck: two wrong entries of a
        counting Select can cancel on one input, so mending one of them alone may look worse than
        breaking a third.)"""
        line = self.lines[i]
        if line.op not in ops.TABLE_OPS:
            return False
        improved = False
        while time.perf_counter() < deadline:
            table = self.lines[i].fn
            better = []  # (score on the sample, order tried, lines) of every change that agrees better there
            for e in range(len(table)):
                for value in self._alternatives(i, table, e):
                    if time.perf_counter() >= deadline:
                        break
                    score, lines = self._trial(i, line._replace(fn=table[:e] + (value,) + table[e + 1:]))
                    if score > self.score + 1e-12:
                        better.append((-score, len(better), lines))
            # The sample can rank a change first that does not agree better on every input; the next may.
            kept = ((lines, program) for _, _, lines in sorted(better)[:KEPT_TRIED] if (program := self._better(lines)) is not None)
            best_lines, program = next(kept, (None, None))
            if program is None:
                return improved
            if best_lines[-1] != self.lines[-1]:  # the output's table read again: its values may be others
                out = best_lines[-1]
                self.types = {**self.types, out.ret: ops.result_type(out.op, out.fn, [self.types[o] for o in out.operands], self.program.max_seq_len)}
            self.lines = best_lines
            self._adopt(program, [i, *self.downstream[i]])
            improved = True
        return improved

    def rewire(self, i: int, deadline: float) -> Program | None:
        """The program with one operand of line i replaced by an earlier variable of the same kind
        and as many values (so that its table still fits), the one that agrees best, if that agrees
        better: the meta-model's commonest error after wrong functions is a wrong argument."""
        line = self.lines[i]
        earlier = self._earlier(i)
        best, found = self.score, None
        for k, operand in enumerate(line.operands):
            for other in earlier:
                if time.perf_counter() >= deadline:
                    break
                if other != operand and _interchangeable(self.types[other], self.types[operand], line.op == "Aggregate" and k == 1):
                    score, lines = self._trial(i, line._replace(operands=line.operands[:k] + (other,) + line.operands[k + 1:]))
                    if score > best + 1e-12:
                        best, found = score, lines
        return None if found is None else self._better(found)

    def swap_function(self, i: int, deadline: float) -> Program | None:
        """The program with line i's table replaced by the library function that agrees best, if
        that agrees better: the way out where two entries must change together (a predicate that
        is LT, not GT) or the line's values are not the ones the model makes."""
        line = self.lines[i]
        if line.op not in ops.TABLE_OPS:
            return None
        operands = [self.types[o] for o in line.operands]
        relabelled = line.ret in self.ranked
        seen = {library.signature(line.op, line.fn, relabelled)}
        best, found = self.score, None
        for name in library.names(line.op):
            if time.perf_counter() >= deadline:
                break
            try:
                table = library.named_table(line.op, name, operands)
                signature = library.signature(line.op, table, relabelled)
                same_type = ops.result_type(line.op, table, operands, self.program.max_seq_len) == self.types[line.ret]
            except (KeyError, ValueError, TypeError):  # not defined on these values
                continue
            if signature in seen:
                continue
            seen.add(signature)
            if same_type:
                score, lines = self._trial(i, line._replace(fn=table))  # every table downstream still fits: a trial
            else:  # other values: the lines downstream are typed again, if their tables still fit them
                try:
                    program = Program([*self.lines[:i], line._replace(fn=table), *self.lines[i + 1:]],
                                      self.program.vocab, self.program.max_seq_len, self.program.causal)
                except ProgramError:
                    continue
                self.trials += 1
                score, lines = self.behaviour.agreement(program).agreement, list(program.lines)
            if score > best + 1e-12:
                best, found = score, lines
        return None if found is None else self._better(found)

    def _alternatives(self, i: int, table: tuple, e: int) -> list:
        line = self.lines[i]
        if line.op == "Select":
            return [not table[e]]
        current = table[e]
        if current is not None and sum(1 for v in table if v is not None and v == current) == 1:
            return []  # the only entry making its value: changing it would change the line's type
        return [v for v in self.types[line.ret].values if not (current is not None and v == current)]

    def read_output(self) -> Program | None:
        """The program with the output line's table read off the model (a categorical Map or
        SequenceMap of categorical operands), if it agrees better — as a Map of one of the operands
        where that agrees as well (the table read ignores the other)."""
        line = self.lines[-1]
        if not self._table_output():
            return None
        simpler = [("Map", (o,)) for o in line.operands] if line.op == "SequenceMap" else []
        return self._read_best([*simpler, (line.op, line.operands)], deadline=None, append=False)

    def rebuild_output(self, deadline: float, anything: bool = False) -> Program | None:
        """The program with another output line — a categorical Map or SequenceMap of any earlier
        categorical variables, its table read off the model — the one that agrees best (a Map
        before a SequenceMap), if that agrees better; lines the output then no longer reads fall
        away. The way out where the output's operands or operation are wrong: its table then is
        too, so rewiring alone never helps.

        Only for an output the meta-model says is a categorical table, unless `anything`: then the
        new line may read any variable, the current output too, and follows it — fitting's last
        resort, tried when no other move helps. (Rebuilding every output from the start lost more
        programs than it gained: a table over whatever variables are there fits the majority of the
        outputs and drops the lines that matter, e.g. a SelectorWidth output made a SequenceMap of tokens.)"""
        line = self.lines[-1]
        if not (anything and self._readable(()) or self._table_output()):
            return None
        names = [v for v in self._earlier(len(self.lines) if anything else len(self.lines) - 1) if self._readable((v,))]
        tried = [*(("Map", (a,)) for a in names), *(("SequenceMap", (a, b)) for a in names for b in names if a != b)]
        return self._read_best([t for t in tried if t != (line.op, line.operands)], deadline, append=anything)

    def _table_output(self) -> bool:
        line = self.lines[-1]
        return line.op in ("Map", "SequenceMap") and self._readable(line.operands)

    def _read_best(self, tried: list[tuple[str, tuple[str, ...]]], deadline: float | None, append: bool) -> Program | None:
        """Of output lines `tried` (operation, operands), each with its table read off the model, the
        program with the one that agrees best on the sample (the first of equals), if it agrees
        better on every input; the new line replaces the output line, or follows it (`append`)."""
        line = self.lines[-1]
        best, found = self.score, None
        for op, operands in tried:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            self.trials += 1
            table, score = self._read(op, operands, line.fn if (op, operands) == (line.op, line.operands) else None)
            if score > best + 1e-12:
                best, found = score, Line(op, table, operands, self._fresh() if append else line.ret)
        if found is None or found == line:
            return None
        return self._better([*self.lines, found] if append else [*self.lines[:-1], found])

    def _fresh(self) -> str:
        """A variable name no line has."""
        return next(name for k in range(len(self.lines) + 1, 2 * len(self.lines) + 2) if (name := f"v{k}") not in self.types)

    def _earlier(self, i: int) -> list[str]:
        """The variables line i may read: the inputs and the lines before it."""
        return ["tokens", "indices", *(other.ret for other in self.lines[:i])]

    def _readable(self, operands) -> bool:
        """Whether an output line of these operands can be read off the model: a categorical model, categorical operands."""
        types = [self.types[o] for o in operands]
        return self.behaviour.model.layout.output_values is not None and not any(t.numerical or t.selector for t in types)

    def _read(self, op: str, operands: tuple[str, ...], old: tuple | None = None, env: dict[str, np.ndarray] | None = None) -> tuple[tuple, float]:
        """The table of an output line `op(*operands)` read off the model on the sample — each entry
        the model's commonest output where the operands hold its key (a pair), by majority since a
        wrong earlier line misleads some inputs; None where it mostly writes nothing; `old`'s
        entry (or None) where the sample never holds the key — and that program's agreement on the sample."""
        labels = self.behaviour.model.layout.output_values
        nothing = len(labels)
        width = len(self.types[operands[-1]].values) if op == "SequenceMap" else 1
        counts = np.zeros((len(self.types[operands[0]].values) * width, nothing + 1), np.int64)
        env = env or self.env
        got, written = self.behaviour.outputs()  # the sample's: a majority needs no more
        keys = env[operands[0]] if op == "Map" else table_index(env[operands[0]], env[operands[1]], width)
        inside = keys >= 0
        np.add.at(counts, (keys[inside], np.where(written, got, nothing)[inside]), 1)
        unread = int((written & ~inside).sum())  # positions where the model writes and the program defines nothing
        choice = counts.argmax(axis=1)
        seen = counts.sum(axis=1) > 0
        table = tuple((labels[c] if c < nothing else None) if s else (old[k] if old else None)
                      for k, (c, s) in enumerate(zip(choice.tolist(), seen.tolist())))
        rows = np.arange(len(choice))
        matches = int(np.where(choice < nothing, counts[rows, choice], 0).sum())
        compared = int(np.where(choice < nothing, counts.sum(axis=1), counts[:, :nothing].sum(axis=1)).sum()) + unread
        return table, matches / compared if compared else 0.0

    def _better(self, lines: list[Line]) -> Program | None:
        """The program of `lines` if it agrees better than the current one on every input (and
        then it becomes the current agreement)."""
        try:
            program = Program(lines, self.program.vocab, self.program.max_seq_len, self.program.causal)
        except ProgramError:
            return None
        self.trials += 1
        agreement = self.full.agreement(program)
        if agreement.agreement <= self.agreement.agreement + 1e-12:
            return None
        self.agreement = agreement
        return program


def _interchangeable(a: VarType, b: VarType, same_values: bool) -> bool:
    """Whether a line can read variable type `a` where it reads `b` and keep its own type: the same
    kind and as many values (a table indexes positions), the very values where it copies them."""
    return a.selector == b.selector and a.encoding == b.encoding and len(a.values) == len(b.values) and (not same_values or a.values == b.values)
