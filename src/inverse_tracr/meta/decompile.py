"""`decompile`: the program a model computes, with the evidence that says how far to trust it.

Two ways to an answer, tried in this order by `method="auto"`:

1. the **exact reader** (`compile.reader`): a standard Tracr model carries its program in its
   weights; the reading is checked against the model's forward pass on every input and, compiled
   again, must give the model's own parameters. A compressed student carries its teacher's
   (`compile.unfold`): its reading, compiled again, must fold into the student's weights;
2. the **meta-model** and its **search** (`meta.search`), for weights the reader refuses (natural
   students, trained models): greedy decoding, beam search, optional sampling, and rounds that fit
   the best candidates' tables to the model (`compile.fit`) and repair the best candidates, within
   a time budget. Every candidate is run against the model on every input
   (`compile.check.Behaviour`) and the one that agrees best is the answer. Nothing runs past the
   budget but the step under way (a decoder's token, a fit's trial), the check of a late batch's
   likeliest candidate, and the answer's own certificate (compiled again: 0.1–0.5 s) where it
   could verify.

An answer is *verified* when it agrees with the model everywhere it defines an output (and defines
at least half of them; a numerical one, all: `check.verifies`). A distilled student agrees with its
program only as often as it agreed with its teacher, and a program whose tables are read off the
student agrees as often by copying its mistakes (on the compressed students of a held-out zoo, 41 of
56 such answers were wrong), so behaviour cannot verify a student's program: its weights must. A
compressed student is its teacher's weights folded through a projection (`compile.projection`), so
an answer is verified when, compiled again, it folds into the student's very weights; a natural
student's weights are trained from scratch and certify nothing, so its answers are never verified.
Anything else is returned as unverified, with the best agreement found: never a silent guess.

A model compiled with `causal=True` decompiles to a causal program: the reader takes the mask from
the layout, and the meta-model's candidates (tokens say nothing of the mask; the weights are the
same either way) are given the model's before they are checked.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import TYPE_CHECKING, Any

from inverse_tracr.compile import fit, projection, reader
from inverse_tracr.compile.check import Agreement, Behaviour, identical_weights, verifies
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import BOS, PAD, POS_EMBED, CompiledModel, Layout
from inverse_tracr.meta.config import SearchConfig
from inverse_tracr.programs import Program

if TYPE_CHECKING:
    from inverse_tracr.meta import search

METHODS = ("auto", "reader", "meta")
#: Candidates each search round fits to the model: on 300 held-out programs (2 s each) fitting
#: the best 1, 3 or 8 verified 75.3 %, 79.3 % and 78.3 % (the rest of the time goes to repair;
#: measured before `compile.fit` swapped functions and sampled its trials: with them, 3 gave 78.0 %).
FITTED_PER_ROUND = 3
#: A student's candidates are compiled and projected only where they agree with it at least this
#: close to the student's own agreement with its teacher, which its gates measured on other inputs:
#: on all 244 compressed students of a held-out zoo, its program's agreement was within 0.061 of it.
STUDENT_SLACK = 0.07


class DecompileError(ValueError):
    """Nothing to decompile with (the reader refused and no meta-model was given, …)."""


@dataclasses.dataclass
class Evidence:
    method: str  # "reader" or "meta-model"
    verified: bool
    agreement: float  # share of the outputs the program defines that equal the model's
    defined: float  # share of output positions the program defines
    inputs: int  # input sequences compared
    exhaustive: bool  # every input up to the model's length
    threshold: float  # agreement needed to be verified (a student: its own agreement with its teacher)
    #: Compiled again, the program gives the model's parameters — a compressed student's folded
    #: through a projection (None: not askable, or not asked: a candidate too far from the model).
    identical_weights: bool | None
    candidates: int  # distinct programs checked
    seconds: float
    reader_refusal: str | None = None  # why the reader declined (method auto or reader)
    greedy_agreement: float | None = None  # the meta-model's greedy guess, for comparison
    found_by: str | None = None  # which step of the search proposed the answer: greedy, beam, sample, repair, fit

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Decompiled:
    program: Program | None
    evidence: Evidence
    greedy: Program | None = None  # the meta-model's greedy answer (meta-model method)

    def to_json(self) -> dict[str, Any]:
        return {
            "program": None if self.program is None else self.program.to_json(),
            "greedy": None if self.greedy is None else self.greedy.to_json(),
            "evidence": self.evidence.to_json(),
        }


def model_from_sample(sample) -> tuple[CompiledModel, float]:
    """A zoo sample's model, and the agreement its program must reach to be verified: 1 for a
    compiled model, a distilled student's own agreement with its teacher otherwise."""
    model = CompiledModel(sample.params, Layout.from_json(sample.meta["model"]))
    stored = sample.meta.get("verification", {})
    threshold = 1.0 if sample.kind == "standard" else float(stored.get("accuracy", 1.0))
    return model, threshold


def model_from_tracr(assembled, output_label: str | None = None) -> CompiledModel:
    """A model compiled by Tracr (`compile_rasp_to_model`, causal or not: the layout keeps which);
    `output_label` is the output SOp's label, found from the output encoder's values when not given
    (it must then be unambiguous)."""
    if output_label is None:
        labels = assembled.residual_labels
        output_map = getattr(assembled.output_encoder, "encoding_map", None)
        names = {label.split(":")[0] for label in labels}
        if output_map is not None:
            wanted = {str(v) for v in output_map}
            matches = [n for n in names if {label.split(":", 1)[1] for label in labels if label.startswith(n + ":")} == wanted]
        else:
            matches = []
        if len(matches) != 1:
            raise DecompileError("give the output SOp's label (output_label=program.label): it cannot be told from the model alone")
        output_label = matches[0]
    return CompiledModel.from_tracr(assembled, output_label)


def decompile(
    model: CompiledModel,
    meta_model=None,
    method: str = "auto",
    threshold: float = 1.0,
    config: SearchConfig = SearchConfig(),
    behaviour: Behaviour | None = None,
) -> Decompiled:
    """The program `model` computes, with its evidence (see the module docstring)."""
    if method not in METHODS:
        raise DecompileError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    started = time.perf_counter()
    refusal = None
    if method in ("auto", "reader"):
        found, refusal = _read(model, threshold, behaviour, started)
        if found is not None:
            return found
        if method == "reader" or meta_model is None:
            return Decompiled(None, Evidence("reader", False, 0.0, 0.0, 0, False, threshold, None, 0,
                                             time.perf_counter() - started, refusal))
    if meta_model is None:
        raise DecompileError("the meta-model method needs a trained meta-model (load_model(store, zoo, run))")
    return _search(model, meta_model, threshold, config, behaviour or Behaviour.of(model), started, refusal)


def _read(model: CompiledModel, threshold: float, behaviour: Behaviour | None, started: float) -> tuple[Decompiled | None, str | None]:
    """The exact reader's answer, or why there is none."""
    try:
        reading = reader.read(model)
    except reader.NotCompiledLayout as error:
        return None, str(error)
    same = _same_weights(reading.program, model)
    if not model.layout.readout:
        return Decompiled(reading.program, Evidence("reader", True, 1.0, 1.0, reading.checked_inputs, reading.exhaustive,
                                                    threshold, same, 1, time.perf_counter() - started)), None
    if not same:
        return None, reader.PREFIX + "the program read from the student's unfolded weights, compiled again, does not fold into them"
    # A student's weights verify its program; its agreement (its own with its teacher) is reported.
    a = (behaviour or Behaviour.of(model)).agreement(reading.program)
    return Decompiled(reading.program, Evidence("reader", True, a.agreement, a.defined, a.inputs, a.exhaustive, threshold,
                                                True, 1, time.perf_counter() - started)), None


def _search(model: CompiledModel, meta_model, threshold: float, config: SearchConfig, behaviour: Behaviour,
            started: float, refusal: str | None) -> Decompiled:
    # Imported here: it brings torch and transformers (8 s to import on 2 cores), which a model the
    # reader answers never needs.
    from inverse_tracr.meta import search

    vocab_ = tuple(t for t in model.layout.input_tokens if t not in (BOS, PAD))
    max_seq_len = model.params[POS_EMBED].shape[0] - 1
    labels = model.layout.output_values
    checked: dict[str, _Checked] = {}
    deadline = started + config.budget_seconds

    def check(candidates: list[search.Candidate]) -> None:
        # Past the deadline only the likeliest of a batch is checked (~30 ms; a fit's single result too).
        for i, candidate in enumerate(sorted(candidates, key=lambda c: -c.logprob)):
            if i and time.perf_counter() >= deadline:
                break
            if candidate.program is None:
                candidate.decode(vocab_, max_seq_len, labels)
            if candidate.program is not None and model.layout.causal:
                candidate.program = dataclasses.replace(candidate.program, causal=True)
            if candidate.program is not None and candidate.program.id not in checked:
                agreement = behaviour.agreement(candidate.program)
                # Compiling a candidate again takes 0.1–0.5 s (a student's, more): past the budget,
                # only the answer's weights are asked, at the end.
                weighed = time.perf_counter() < deadline
                verified, same = certify(candidate.program, agreement, model, threshold, behaviour.numerical, weighed)
                checked[candidate.program.id] = _Checked(agreement, candidate, verified, same, weighed)

    def done() -> bool:
        return any(c.verified and c.same is not False for c in checked.values())

    def best(pool) -> list[_Checked]:
        return sorted(pool, key=lambda c: (-c.agreement.agreement, -c.candidate.logprob))

    greedy = search.Candidate(meta_model.generate([model.params], inputs=[(vocab_, max_seq_len)])[0], 0.0, "greedy")
    check([greedy])
    greedy_agreement = checked[greedy.program.id].agreement.agreement if greedy.program is not None else None
    if not done() and config.beam > 1 and time.perf_counter() < deadline:
        check(search.beam_search(meta_model, model.params, vocab_, max_seq_len, config.beam, deadline))
    if not done() and config.samples and time.perf_counter() < deadline:
        check(search.sample(meta_model, model.params, vocab_, max_seq_len, config.samples, config.temperature, deadline=deadline))
    # Rounds climb: each fits the tables of the best candidates not fitted yet to the model's
    # behaviour (`compile.fit`), then forks the two best candidates not forked yet, so that a program
    # with two wrong tokens is mended one token a round, guided by how much closer each fork behaves.
    # A round that finds nothing closer than the best so far ends the search.
    fitted: set[str] = set()
    repaired: set[str] = set()
    for _ in range(config.repair_rounds):
        if done() or time.perf_counter() >= deadline:
            break
        before = best(checked.values())[0].agreement.agreement if checked else 0.0
        if config.fit:
            for c in best(c for c in checked.values() if c.candidate.program.id not in fitted)[:FITTED_PER_ROUND]:
                if time.perf_counter() >= deadline:
                    break
                fitted.add(c.candidate.program.id)
                result = fit.fit(c.candidate.program, behaviour, deadline)
                if result is not None:
                    check([search.Candidate([], c.candidate.logprob, "fit", program=result.program)])
                    fitted.add(result.program.id)
        for c in best(c for c in checked.values() if c.candidate.program.id not in repaired and c.candidate.steps)[:2]:
            if time.perf_counter() < deadline and not done():
                repaired.add(c.candidate.program.id)
                check(search.repair(meta_model, model.params, c.candidate, vocab_, max_seq_len, config.repair_positions, deadline))
        if checked and best(checked.values())[0].agreement.agreement <= before:
            break
    if not checked:
        return Decompiled(None, Evidence("meta-model", False, 0.0, 0.0, len(behaviour.inputs), behaviour.exhaustive, threshold,
                                         None, 0, time.perf_counter() - started, refusal, greedy_agreement), greedy.program)
    top = max(checked.values(), key=lambda c: (c.verified, c.same is True, c.agreement.agreement, c.candidate.logprob))
    if not top.weighed:
        top.verified, top.same = certify(top.candidate.program, top.agreement, model, threshold, behaviour.numerical)
    seconds = time.perf_counter() - started
    a = top.agreement
    return Decompiled(top.candidate.program, Evidence("meta-model", top.verified, a.agreement, a.defined, a.inputs, a.exhaustive,
                                                      threshold, top.same, len(checked), seconds, refusal, greedy_agreement,
                                                      top.candidate.how),
                      greedy.program)


def certify(program: Program, agreement: Agreement, model: CompiledModel, threshold: float, numerical: bool,
            weights: bool = True) -> tuple[bool, bool | None]:
    """(verified, whether compiled again it gives the model's weights) for a candidate that agrees
    with `model` as `agreement` says; the weights are asked only of a candidate that could verify,
    and only if `weights` (else None: a student's candidate is then not verified)."""
    if model.layout.readout:  # a student: only its weights can verify (module docstring)
        same = _same_weights(program, model) if weights and agreement.agreement >= threshold - STUDENT_SLACK else None
        return same is True, same
    # Programs that behave alike are told apart by the strongest certificate: compiled again, a
    # standard model's program gives its very weights.
    verified = verifies(agreement, threshold, numerical)
    return verified, _same_weights(program, model) if verified and weights else None


@dataclasses.dataclass
class _Checked:
    agreement: Agreement
    candidate: search.Candidate
    verified: bool
    same: bool | None  # recompiled to the model's weights (None: not askable, not verified, or not weighed)
    weighed: bool = True  # its weights were asked, if it could verify (not past the budget)


def _same_weights(program: Program, model: CompiledModel) -> bool | None:
    """Whether `program`, compiled, gives `model`'s parameters (a student's: folded through a
    projection, whatever the residual's order); None where that cannot be asked: a standard model
    whose variables are not named canonically (Tracr orders the residual stream by name, so a
    user's names give another order of the same weights)."""
    names = {label.split(":")[0] for label in model.layout.residual_labels}
    if not model.layout.readout and not all(n in ("tokens", "indices", "one") or _CANONICAL.fullmatch(n) for n in names):
        return None
    try:
        compiled = compile_program(program)
    except Exception:  # noqa: BLE001 - Tracr may fail on a candidate it never compiled before
        return False
    return projection.projects(compiled, model) if model.layout.readout else identical_weights(compiled, model)


#: Our variables' names, and the hidden one Tracr adds beside each SelectorWidth.
_CANONICAL = re.compile(r"v\d+(_selector_width_attn_output)?")
