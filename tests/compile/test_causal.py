"""Models compiled with `causal=True`: represented, evaluated, run, read and decompiled as causal.

Tracr's causal model has a non-causal model's weights and masks every attention query to keys at
positions ≤ its own (BOS, position 0, always visible). A causal `Program` is evaluated with that
mask, and everything here is checked against Tracr itself: each program is compiled by stock
Tracr with `causal=True` (named as its canonical `Program`, so that recompiling can be compared
parameter for parameter), run by Tracr's own forward pass on every input up to length 3 and 200
random full-length ones, and read back.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import random
from typing import Any

import jax
import numpy as np
import pytest
from tracr.compiler import compiling
from tracr.rasp import causal_eval, rasp

from inverse_tracr.compile import forward
from inverse_tracr.compile.check import Behaviour, identical_weights
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import BOS, PAD, CompiledModel, Layout
from inverse_tracr.compile.verify import expected_outputs, verify
from inverse_tracr.meta import vocab
from inverse_tracr.meta.config import SearchConfig
from inverse_tracr.meta.decompile import decompile, model_from_tracr
from inverse_tracr.programs import Program, ProgramError
from inverse_tracr.programs.batch import evaluate_many
from inverse_tracr.programs.from_rasp import canonical_names, renamed
from inverse_tracr.programs.sampler import SamplerConfig, sample_program
from inverse_tracr.programs.tracr_lib import LIB


@dataclasses.dataclass(frozen=True)
class Case:
    sop: rasp.SOp
    vocab: tuple[Any, ...]
    max_seq_len: int
    mask_matters: bool  # whether the causal model computes another function than the non-causal one


def _sampled(seed: int, mask_matters: bool) -> Case:
    program = sample_program(random.Random(seed), SamplerConfig(4, 7))
    return Case(program.to_rasp(), program.vocab, program.max_seq_len, mask_matters)


def _lib(name: str, mask_matters: bool) -> Case:
    entry = LIB[name]
    return Case(entry.make(), entry.vocab, entry.max_seq_len, mask_matters)


CASES = {
    "length": _lib("length", True),
    "hist": _lib("hist", True),
    "sort_unique": _lib("sort_unique", True),
    "reverse": _lib("reverse", True),
    "count_less_freq": _lib("count_less_freq", True),
    # Tracr's lib writes these to work under both evaluations: they only look back.
    "frac_prevs": _lib("frac_prevs", False),
    "shift_by": _lib("shift_by", False),
    "pair_balance": _lib("pair_balance", False),
    "sampled_1": _sampled(1, True),
    "sampled_2": _sampled(2, True),
}


@functools.cache
def _compiled(name: str):
    """Stock Tracr's causal model of the case, with its expressions named canonically, and the
    output label."""
    case = CASES[name]
    named = renamed(case.sop, canonical_names(case.sop, case.vocab, case.max_seq_len))
    assembled = compiling.compile_rasp_to_model(named, set(case.vocab), case.max_seq_len, compiler_bos=BOS, compiler_pad=PAD, causal=True)
    return assembled, named.label


def _inputs(case: Case) -> list[list[Any]]:
    rng = random.Random(0)
    short = [list(xs) for n in range(1, min(3, case.max_seq_len) + 1) for xs in itertools.product(case.vocab, repeat=n)]
    return short + [[rng.choice(case.vocab) for _ in range(case.max_seq_len)] for _ in range(200)]


def _tracr_run(assembled, inputs: list[list[Any]]) -> tuple[list[list[Any]], list[np.ndarray]]:
    """Tracr's own forward pass (`assembled.forward`, what `assembled.apply` runs) batched by
    length: each input's decoded outputs and final residual stream [T+1, D], BOS first."""
    run = jax.jit(assembled.forward)
    decoded: list[Any] = [None] * len(inputs)
    residuals: list[Any] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, xs in enumerate(inputs):
        by_length.setdefault(len(xs), []).append(i)
    for rows in by_length.values():
        ids = np.array([assembled.input_encoder.encode([BOS, *inputs[i]]) for i in rows])
        out = run(assembled.params, ids)
        unembedded, residual = np.asarray(out.unembedded_output), np.asarray(out.transformer_output.output)
        for i, u, r in zip(rows, unembedded, residual):
            row = u[1:].tolist()
            decoded[i] = assembled.output_encoder.decode(row) if assembled.output_encoder else row
            residuals[i] = r
    return decoded, residuals


def _same(got: Any, want: Any, numerical: bool) -> bool:
    return bool(np.isclose(got, want, rtol=0.005, atol=1e-5)) if numerical and None not in (got, want) else got == want


def _disagreements(outputs: list[list[Any]], model_outputs: list[list[Any]], numerical: bool) -> tuple[int, int]:
    """(positions where the evaluation defines a value, those where the model's output differs)."""
    pairs = [(want, got) for row, model_row in zip(outputs, model_outputs) for want, got in zip(row, model_row) if want is not None]
    return len(pairs), sum(not _same(got, want, numerical) for want, got in pairs)


@pytest.mark.parametrize("name", list(CASES))
def test_a_causal_model_is_evaluated_run_and_decompiled_as_causal(name):
    case = CASES[name]
    assembled, label = _compiled(name)
    assert assembled.model_config.causal
    program = Program.from_rasp(case.sop, case.vocab, case.max_seq_len, causal=True)
    inputs = _inputs(case)
    theirs, residuals = _tracr_run(assembled, inputs)
    model = model_from_tracr(assembled, label)
    numerical = model.layout.output_values is None

    # The masked evaluation, batched, is Tracr's causal_eval of the user's own RASP, and Tracr's model.
    ours = evaluate_many(program, inputs)
    by_tracr_eval = [causal_eval.evaluate(case.sop, xs) for xs in inputs]
    assert all(_same(a, b, numerical) for row, tracr_row in zip(ours, by_tracr_eval) for a, b in zip(row, tracr_row))
    compared, differ = _disagreements(ours, theirs, numerical)
    assert compared > len(inputs) and differ == 0, (name, compared, differ)
    unmasked = evaluate_many(dataclasses.replace(program, causal=False), inputs)
    assert (_disagreements(unmasked, theirs, numerical)[1] > 0) == case.mask_matters

    # Our NumPy forward pass is Tracr's, residual for residual (decoded argmaxes of an empty
    # output block are float noise, so the residuals are compared, not the decoded outputs). Both
    # run in float32, whose rounding depends on the CPU: on an AMD EPYC an average of two values
    # came out 0.49994 here against Tracr's 0.5 (the same pass in float64: within 2e-6 of Tracr's),
    # while a key the mask let through would move it by a tenth or more.
    assert model.layout.causal
    for length in {len(xs) for xs in inputs}:
        rows = [i for i, xs in enumerate(inputs) if len(xs) == length]
        mine = forward.residual_output(model, forward.token_ids(model, [inputs[i] for i in rows]))
        np.testing.assert_allclose(mine, np.stack([residuals[i] for i in rows]), rtol=1e-5, atol=1e-4, err_msg=name)
    xs = inputs[-1]  # `apply`, Tracr's per-input entry point, runs the same forward pass
    np.testing.assert_allclose(np.asarray(assembled.apply([BOS, *xs]).transformer_output)[0], residuals[-1], rtol=1e-5, atol=1e-5)

    # Read back: the causal program, verified against the masked forward pass, recompiled (with
    # the mask) to the model's very parameters. (The evidence cannot ask that of a model straight
    # from Tracr, whose labels carry RASP's counters: `_same_weights` says None; asked here.)
    result = decompile(model, method="reader")
    assert result.program == program and result.program.causal
    evidence = result.evidence
    assert evidence.verified and evidence.agreement == 1.0 and evidence.identical_weights is not False
    assert identical_weights(compile_program(result.program), model)
    assert not identical_weights(compile_program(dataclasses.replace(result.program, causal=False)), model)
    assert result.program != dataclasses.replace(program, causal=False)
    assert result.program.id != dataclasses.replace(program, causal=False).id
    assert Program.from_json(json.loads(json.dumps(result.program.to_json()))) == program


def test_a_non_causal_model_is_still_read_as_non_causal():
    case = CASES["hist"]
    named = renamed(case.sop, canonical_names(case.sop, case.vocab, case.max_seq_len))
    assembled = compiling.compile_rasp_to_model(named, set(case.vocab), case.max_seq_len, compiler_bos=BOS, compiler_pad=PAD)
    model = model_from_tracr(assembled, named.label)
    assert not model.layout.causal
    result = decompile(model, method="auto")
    assert result.program == Program.from_rasp(case.sop, case.vocab, case.max_seq_len) and not result.program.causal
    assert result.evidence.verified and identical_weights(compile_program(result.program), model)
    # a causal reading of it disagrees with the model (the reader would have refused it)
    causal = dataclasses.replace(result.program, causal=True)
    assert Behaviour.of(model).agreement(causal).agreement < 1.0


def test_identity_json_and_source_carry_the_mask_only_when_set():
    # Ids computed before `causal` existed (hard-coded then): non-causal ids must never change,
    # or every stored zoo's ids would.
    assert LIB["hist"].program().id == "f233a1f724126f65"
    assert LIB["frac_prevs"].program().id == "6d475151c9392495"
    assert sample_program(random.Random(0), SamplerConfig(4, 7)).id == "167e1bfc97552e9c"
    plain = LIB["hist"].program()
    causal = Program.from_rasp(LIB["hist"].make(), LIB["hist"].vocab, LIB["hist"].max_seq_len, causal=True)
    assert causal.lines == plain.lines and causal != plain and len({causal, plain}) == 2
    assert "causal" not in plain.to_json() and causal.to_json()["causal"] is True
    assert Program.from_json(causal.to_json()) == causal and Program.from_json(plain.to_json()) == plain
    old = {k: v for k, v in plain.to_json().items() if k in ("lines", "vocab", "max_seq_len")}  # JSON from before the flag
    assert Program.from_json(old) == plain and not Program.from_json(old).causal
    with pytest.raises(ProgramError, match="does not match"):
        Program.from_json({**causal.to_json(), "causal": False})  # the id says it was causal
    with pytest.raises(ProgramError, match="causal must be true or false"):
        Program.from_json({**old, "causal": "yes"})
    assert causal.source().splitlines()[:-1] == plain.source().splitlines()[:-1]
    assert causal.source().splitlines()[-1].startswith(f"program = {plain.output}  # causal")
    assert "causal" not in plain.source()


def test_compiling_a_causal_program_masks_the_model_and_verification_uses_the_mask():
    program = dataclasses.replace(sample_program(random.Random(1), SamplerConfig(4, 7)), causal=True)
    plain = dataclasses.replace(program, causal=False)
    model, plain_model = compile_program(program), compile_program(plain)
    assert model.layout.causal and not plain_model.layout.causal
    assert model.params.keys() == plain_model.params.keys()
    assert all(np.array_equal(model.params[k], plain_model.params[k]) for k in model.params)  # only the mask differs
    stock = CompiledModel.from_tracr(*_compiled("sampled_1"))
    assert all(np.array_equal(model.params[k], stock.params[k]) for k in model.params) and stock.layout.causal
    inputs = _inputs(CASES["sampled_1"])
    expected, reason = expected_outputs(program, inputs)
    assert reason is None and verify(model, inputs, expected).passed
    plain_expected, _ = expected_outputs(plain, inputs)
    assert not verify(model, inputs, plain_expected).passed  # the unmasked labels are wrong for it
    # meta.json: a causal layout says so; a non-causal one serialises as before the flag
    assert Layout.from_json(json.loads(json.dumps(model.layout.to_json()))) == model.layout
    assert model.layout.to_json()["causal"] is True and "causal" not in plain_model.layout.to_json()
    assert Layout.from_json(plain_model.layout.to_json()) == plain_model.layout


class _Says:
    """A meta-model that always answers one program's tokens: the program, not the model, is under
    test here (the decoded tokens carry no mask; the candidate must get the model's)."""

    def __init__(self, program: Program):
        self.ids = vocab.encode(program)[1:]

    def generate(self, params, inputs=None) -> list[list[int]]:
        return [self.ids for _ in params]


def test_meta_model_candidates_get_the_models_mask():
    stock = CompiledModel.from_tracr(*_compiled("sampled_1"))
    plain = sample_program(random.Random(1), SamplerConfig(4, 7))
    assert Behaviour.of(stock).agreement(plain).agreement < 1.0  # the tokens' program, unmasked, is wrong
    result = decompile(stock, _Says(plain), method="meta", config=SearchConfig(beam=1, repair_rounds=0))
    assert result.program == dataclasses.replace(plain, causal=True) and result.greedy.causal
    assert result.evidence.method == "meta-model" and result.evidence.verified and result.evidence.agreement == 1.0
    assert identical_weights(compile_program(result.program), stock)
