"""The exact reader: compiled Tracr models read back into RASP programs that compute the same thing.

Every model here is compiled by Tracr from a hand-built RASP program (or one of Tracr's own `lib`
programs at the vocabulary and length Tracr's tests use), read back from its weights alone, and the
reading must equal the original under `rasp.evaluate` on every input up to length 3 plus 200
random full-length inputs, and equal the model's own forward pass there. Weights that are not a
compiled layout are refused with the reader's message.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time

import numpy as np
import pytest
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

from inverse_tracr.compile import forward, reader
from inverse_tracr.compile.fast_init import fast_init
from inverse_tracr.compile.model import BOS, PAD, READOUT, CompiledModel
from inverse_tracr.programs import Program
from inverse_tracr.programs.tracr_lib import LIB

DIGITS = (0, 1, 2, 3, 4)
TIMES: dict[str, float] = {}


def compile_sop(sop: rasp.SOp, vocab, max_seq_len: int) -> CompiledModel:
    """Tracr's compilation (parameters identical to stock Tracr's, see `fast_init`)."""
    with fast_init():
        assembled = compiling.compile_rasp_to_model(
            sop, vocab=set(vocab), max_seq_len=max_seq_len, compiler_bos=BOS, compiler_pad=PAD
        )
    return CompiledModel.from_tracr(assembled, sop.label)


def inputs_for(vocab, max_seq_len: int) -> list[list]:
    rng = random.Random(0)
    short = [list(p) for n in range(1, min(3, max_seq_len) + 1) for p in itertools.product(vocab, repeat=n)]
    return short + [[rng.choice(list(vocab)) for _ in range(max_seq_len)] for _ in range(200)]


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, str):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
    return a == b


def assert_reads_back(name: str, sop: rasp.SOp, vocab, max_seq_len: int) -> reader.Reading:
    model = compile_sop(sop, vocab, max_seq_len)
    start = time.perf_counter()
    reading = reader.read(model)  # verifies against the forward pass itself
    TIMES[name] = time.perf_counter() - start
    assert set(reading.vocab) == set(vocab)
    assert reading.max_seq_len == max_seq_len
    assert reading.program == Program.from_rasp(sop, vocab, max_seq_len), (name, reading.program.source())  # the same canonical id
    inputs = inputs_for(vocab, max_seq_len)
    model_outputs = forward.run(model, inputs)
    numerical = model.layout.output_values is None
    for xs, from_model in zip(inputs, model_outputs):
        want = rasp.evaluate(sop, xs)
        got = rasp.evaluate(reading.sop, xs)
        assert all(same(w, g) for w, g in zip(want, got)), (name, xs, want, got)
        for g, m in zip(got, from_model):
            if g is not None:
                assert same(g, m) if not numerical else abs(float(g) - m) <= max(1e-5, 0.005 * abs(float(g))), (name, xs, got, from_model)
    return reading


def kinds(reading: reader.Reading) -> list[str]:
    return sorted(op.kind for op in reading.ops)


# --- one operation kind at a time ----------------------------------------------------------------


def test_categorical_map_with_a_non_library_lambda():
    sq = rasp.categorical(rasp.Map(lambda x: x * x % 5, rasp.tokens))
    reading = assert_reads_back("map", sq, DIGITS, 4)
    (op,) = reading.ops
    assert op.kind == "Map" and op.encoding == "categorical"
    assert op.table == {0: 0, 1: 1, 2: 4, 3: 4, 4: 1}  # the output keeps its labels


def test_intermediate_categorical_values_are_ranks():
    sq = rasp.categorical(rasp.Map(lambda x: x * x % 5 + 10, rasp.tokens))  # values 10, 11, 14
    out = rasp.categorical(rasp.Map(lambda x: x > 12, sq, simplify=False))
    reading = assert_reads_back("map_chain", out, DIGITS, 4)
    first = next(op for op in reading.ops if op.inputs == ("tokens",))
    assert first.values == (0, 1, 2) and first.table == {0: 0, 1: 1, 2: 2, 3: 2, 4: 1}
    assert reading.ops[-1].table == {0: False, 1: False, 2: True}


def test_relabelled_programs_compile_and_read_identically():
    """`x = tokens + 1` and `x = tokens + 10` (tables shifted to match) give one reading."""

    def program(shift):
        x = rasp.categorical(rasp.Map(lambda t: t + shift, rasp.tokens))
        sel = rasp.Select(x, x, lambda k, q: k == q - 1 or k == q)
        width = rasp.categorical(rasp.SelectorWidth(sel))
        return rasp.categorical(rasp.SequenceMap(lambda w, v: w + v - shift, width, x))

    a = reader.read(compile_sop(program(1), DIGITS, 4))
    b = reader.read(compile_sop(program(10), DIGITS, 4))
    assert [(o.kind, o.values, o.table) for o in a.ops] == [(o.kind, o.values, o.table) for o in b.ops]


def test_categorical_to_numerical_map():
    out = rasp.numerical(rasp.Map(lambda x: 0.25 * x + 0.5, rasp.tokens))
    reading = assert_reads_back("cat_to_num", out, DIGITS, 4)
    assert reading.ops[0].table == {0: 0.5, 1: 0.75, 2: 1.0, 3: 1.25, 4: 1.5}


def test_numerical_to_numerical_map_of_a_numerical_aggregate():
    bools = rasp.numerical(rasp.Map(lambda x: 1 if x > 2 else 0, rasp.tokens))
    same_pos = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    mean = rasp.numerical(rasp.Aggregate(same_pos, bools, default=0))
    out = rasp.numerical(rasp.Map(lambda x: 3 * x + 1, mean))
    reading = assert_reads_back("num_to_num", out, DIGITS, 4)
    assert kinds(reading) == ["Aggregate", "Map", "Map", "Select"]
    last = reading.ops[-1]
    assert last.encoding == "numerical" and last.table[0] == 1.0 and last.table[1] == 4.0


def test_numerical_map_chain_from_tokens():
    x = rasp.numerical(rasp.Map(lambda t: t + 1, rasp.tokens))
    out = rasp.numerical(rasp.Map(lambda v: v * v / 2, x, simplify=False))
    reading = assert_reads_back("num_chain", out, DIGITS, 3)
    assert reading.ops[-1].table == {1.0: 0.5, 2.0: 2.0, 3.0: 4.5, 4.0: 8.0, 5.0: 12.5}


def test_numerical_to_categorical_map():
    bools = rasp.numerical(rasp.Map(lambda x: x == 1, rasp.tokens))
    frac = lib.make_frac_prevs(bools)
    out = rasp.categorical(rasp.Map(lambda f: "none" if f == 0 else "some", frac))
    reading = assert_reads_back("num_to_cat", out, DIGITS, 4)
    assert reading.ops[-1].encoding == "categorical" and reading.ops[-1].values == ("none", "some")


def test_sequence_map_keeps_operand_order():
    out = rasp.categorical(rasp.SequenceMap(lambda x, i: (x + 2 * i) % 7, rasp.tokens, rasp.indices))
    reading = assert_reads_back("sequence_map", out, DIGITS, 4)
    (op,) = reading.ops
    assert op.kind == "SequenceMap" and op.inputs == ("tokens", "indices")
    swapped = rasp.categorical(rasp.SequenceMap(lambda i, x: (x + 2 * i) % 7, rasp.indices, rasp.tokens))
    assert assert_reads_back("sequence_map_swapped", swapped, DIGITS, 4).ops[0].inputs == ("indices", "tokens")


def test_linear_sequence_map():
    a = rasp.numerical(rasp.Map(lambda x: x / 4, rasp.tokens))
    b = rasp.numerical(rasp.Map(lambda x: 1 if x % 2 else 0, rasp.tokens))
    out = rasp.numerical(rasp.LinearSequenceMap(a, b, 2, -0.5))
    reading = assert_reads_back("linear_sequence_map", out, DIGITS, 3)
    op = next(op for op in reading.ops if op.kind == "LinearSequenceMap")
    assert op.table == (2.0, -0.5)
    fst, snd = (next(o for o in reading.ops if o.label == label) for label in op.inputs)
    assert fst.table == {x: x / 4 for x in DIGITS} and snd.table == {x: float(x % 2) for x in DIGITS}


@pytest.mark.parametrize("comparison", list(rasp.Comparison), ids=lambda c: c.name)
def test_select_with_each_comparison(comparison):
    width = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.indices, comparison)))
    reading = assert_reads_back(f"select_{comparison.name}", width, DIGITS, 4)
    select = next(op for op in reading.ops if op.kind == "Select")
    if comparison == rasp.Comparison.FALSE:  # selects nothing: the queried variable is not in the weights
        assert select.inputs == ("tokens", "tokens") and not any(select.table.values())
    else:
        assert select.inputs == ("tokens", "indices")
        assert select.table == {(k, q): comparison(k, q) for k in DIGITS for q in range(4)}


def test_select_with_a_lambda_predicate_and_categorical_aggregate():
    shifted = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1)
    out = rasp.categorical(rasp.Aggregate(shifted, rasp.tokens))
    reading = assert_reads_back("lambda_select", out, DIGITS, 5)
    select = next(op for op in reading.ops if op.kind == "Select")
    assert select.table == {(k, q): q == k + 1 for k in range(5) for q in range(5)}


def test_numerical_aggregate():
    bools = rasp.numerical(rasp.Map(lambda x: x < 2, rasp.tokens))
    out = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), bools, default=0))
    reading = assert_reads_back("numerical_aggregate", out, DIGITS, 5)
    assert next(op for op in reading.ops if op.kind == "Aggregate").encoding == "numerical"


@pytest.mark.parametrize("encoding", [rasp.categorical, rasp.numerical], ids=["categorical", "numerical"])
def test_selector_width(encoding):
    out = encoding(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)))
    reading = assert_reads_back(f"selector_width_{encoding.__name__}", out, DIGITS, 5)
    assert kinds(reading) == ["Select", "SelectorWidth"]


# --- several operations in one layer; other vocabularies --------------------------------------------


def test_several_operations_in_one_layer():
    f = rasp.categorical(rasp.Map(lambda x: x % 2, rasp.tokens))
    g = rasp.categorical(rasp.Map(lambda x: x // 2, rasp.tokens))
    h = rasp.numerical(rasp.Map(lambda x: x == 3, rasp.tokens))
    k = rasp.numerical(rasp.Map(lambda x: x == 4, rasp.tokens))
    fg = rasp.categorical(rasp.SequenceMap(lambda a, b: a + 3 * b, f, g))  # two Maps in one MLP
    w1 = rasp.categorical(rasp.SelectorWidth(rasp.Select(fg, fg, rasp.Comparison.EQ)))
    w2 = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, fg, rasp.Comparison.GT)))
    agg = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), g))
    hk = rasp.numerical(rasp.LinearSequenceMap(h, k, 0.5, 0.5))
    hk_mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), hk, default=0))
    hk_cat = rasp.categorical(rasp.Map(lambda v: v > 0.5, hk_mean))
    ws = rasp.categorical(rasp.SequenceMap(lambda a, b: a * 10 + b, w1, w2))  # two SelectorWidths in one layer
    out = rasp.categorical(rasp.SequenceMap(lambda a, b: (a, b), ws, agg))
    out = rasp.categorical(rasp.SequenceMap(lambda a, b: str(a) + str(b), out, hk_cat))
    model = compile_sop(out, DIGITS, 4)
    reading = assert_reads_back("one_layer", out, DIGITS, 4)
    layers = {}
    for op in reading.ops:
        layers.setdefault((op.layer, op.sublayer), []).append(op.kind)
    assert max(len(v) for v in layers.values()) >= 3
    assert model.layout.num_heads >= 2


def test_string_vocabularies():
    words = ("the", "cat", "sat", "on", "mat")
    length = rasp.categorical(rasp.Map(lambda w: len(w), rasp.tokens))
    count = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)))
    out = rasp.categorical(rasp.SequenceMap(lambda n, c: f"{n}x{c}", length, count))
    assert_reads_back("words", out, words, 4)
    brackets = ("(", ")", "[", "]")
    opens = rasp.categorical(rasp.Map(lambda b: b in "([", rasp.tokens))
    prev = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1), rasp.tokens))
    out = rasp.categorical(rasp.SequenceMap(lambda o, p: o and p in ")]", opens, prev))
    assert_reads_back("brackets", out, brackets, 5)


def _edge_cases():
    t = rasp.tokens
    seven = rasp.categorical(rasp.Map(lambda x: 7, t))
    a = rasp.numerical(rasp.Map(lambda x: x / 4, t))
    b = rasp.numerical(rasp.Map(lambda x: x > 2, t))
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), b, default=0))
    return {
        "constant_categorical_as_query": rasp.categorical(rasp.SelectorWidth(rasp.Select(seven, t, rasp.Comparison.EQ))),
        "constant_categorical_in_sequence_map": rasp.categorical(rasp.SequenceMap(lambda x, c: x * 10 + c, t, seven)),
        "constant_numerical_map": rasp.numerical(rasp.Map(lambda v: 5, mean)),
        "linear_sequence_map_with_a_zero_factor": rasp.numerical(rasp.LinearSequenceMap(a, b, 0, 1)),
        "linear_sequence_map_of_one_variable": rasp.numerical(rasp.LinearSequenceMap(a, a, 1, 2)),
        "partial_categorical_output": rasp.categorical(rasp.Map(lambda x: x if x > 1 else None, t)),
        "two_numerical_maps_of_one_input": rasp.numerical(rasp.LinearSequenceMap(
            rasp.numerical(rasp.Map(lambda v: 2 * v, mean)), rasp.numerical(rasp.Map(lambda v: v + 1, mean)), 1, 1)),
        "numerical_selector_width_squared": rasp.numerical(rasp.Map(lambda w: w * w, rasp.numerical(
            rasp.SelectorWidth(rasp.Select(t, t, rasp.Comparison.LEQ))))),
    }


@pytest.mark.parametrize("name", list(_edge_cases()))
def test_edge_cases(name):
    assert_reads_back(name, _edge_cases()[name], DIGITS, 3)


@pytest.mark.parametrize("vocab", [(True, False), (0.25, 0.5, 0.75), (1, "a", 2)], ids=["bools", "floats", "mixed"])
def test_other_token_types(vocab):
    out = rasp.categorical(rasp.SequenceMap(lambda x, w: str(x) + str(w), rasp.tokens,
                                            rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)))))
    assert_reads_back(f"tokens_{vocab}", out, vocab, 3)


@pytest.mark.parametrize("name", list(LIB))
def test_tracr_lib_programs(name):
    entry = LIB[name]
    assert_reads_back(f"lib_{name}", entry.make(), entry.vocab, entry.max_seq_len)


def test_lib_sort_reads_its_float_keys_as_ranks():
    entry = LIB["sort"]
    reading = assert_reads_back("lib_sort_again", entry.make(), entry.vocab, entry.max_seq_len)
    keys = next(op for op in reading.ops if op.kind == "SequenceMap")
    assert keys.values == tuple(range(len(keys.values)))


# --- refusals ------------------------------------------------------------------------------------


def _model():
    sq = rasp.categorical(rasp.Map(lambda x: x * x % 5, rasp.tokens))
    out = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, sq, rasp.Comparison.EQ), rasp.tokens))
    return compile_sop(out, DIGITS, 5)


def _refused(model) -> str:
    with pytest.raises(reader.NotCompiledLayout) as caught:
        reader.read(model)
    message = str(caught.value)
    assert message.startswith("not a compiled Tracr layout: ")
    return message


def test_random_weights_are_refused():
    model = _model()
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in model.params.items()}
    _refused(dataclasses.replace(model, params=params))
    # Random weights keep the shapes but not even Tracr's zero biases; zero them too.
    params = {k: (np.zeros_like(v) if k.endswith("/b") else v) for k, v in params.items()}
    _refused(dataclasses.replace(model, params=params))


@pytest.mark.parametrize(
    "matrix",
    ["transformer/layer_0/mlp/linear_1/w", "transformer/layer_0/mlp/linear_2/w", "transformer/layer_1/attn/query/w",
     "transformer/layer_1/attn/key/w", "transformer/layer_1/attn/value/w", "transformer/layer_1/attn/linear/w",
     "token_embed/embeddings", "pos_embed/embeddings"],
)
def test_noise_on_one_matrix_is_refused(matrix):
    model = _model()
    reader.read(model)  # the clean model reads
    rng = np.random.default_rng(1)
    params = dict(model.params)
    params[matrix] = params[matrix] + rng.normal(scale=1e-2, size=params[matrix].shape).astype(np.float32)
    _refused(dataclasses.replace(model, params=params))


def test_perturbed_nonzero_weights_are_refused():
    """Zeros kept, every nonzero weight of one matrix off by ~1 %: the patterns no longer fit."""
    model = _model()
    rng = np.random.default_rng(2)
    for matrix in ("transformer/layer_0/mlp/linear_2/w", "transformer/layer_1/attn/query/w", "transformer/layer_1/attn/value/w"):
        params = dict(model.params)
        w = params[matrix]
        params[matrix] = np.where(w != 0, w * (1 + rng.normal(scale=1e-2, size=w.shape)), 0).astype(np.float32)
        _refused(dataclasses.replace(model, params=params))


def test_a_rotated_residual_is_refused():
    """A residual stream in another basis (what a compressed student learns) has no Tracr blocks."""
    model = _model()
    width = model.params["token_embed/embeddings"].shape[1]
    rotation, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(width, width)))
    params = {}
    for name, w in model.params.items():
        if name.endswith(("embeddings", "attn/linear/w", "linear_2/w")):
            params[name] = (w @ rotation).astype(np.float32)  # writes the residual
        elif name.endswith(("query/w", "key/w", "value/w", "linear_1/w")):
            params[name] = (rotation.T @ w).astype(np.float32)  # reads it
        else:
            params[name] = w
    _refused(dataclasses.replace(model, params=params))


def test_a_read_out_tensor_is_refused():
    model = _model()
    width = model.params["token_embed/embeddings"].shape[1]
    params = dict(model.params, **{READOUT: np.eye(width, len(model.layout.output_dims), dtype=np.float32)})
    assert "readout/w" in _refused(dataclasses.replace(model, params=params))


def test_a_wrong_program_would_be_refused():
    """The final check compares the reading with the forward pass (here: a model Tracr got wrong)."""
    # A categorical Aggregate over a selector that selects several different values: RASP's mean
    # is a value of the program, Tracr's model averages one-hot vectors instead.
    out = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ), rasp.indices))
    out = rasp.categorical(rasp.Map(lambda x: x, out))
    model = compile_sop(out, DIGITS, 3)
    message = _refused(model)
    assert "disagrees with the model's forward pass" in message
    with pytest.raises(reader.ReadingMismatch, match="disagrees with the model's forward pass"):
        reader.read(model)


def test_a_model_tracr_compiled_inexactly_is_refused():
    """make_length at length 10: the SelectorWidth MLP cannot tell 1/11 from 1/10 at Tracr's
    default sharpness, so the model says 9 where its program says 10."""
    with pytest.raises(reader.ReadingMismatch, match="disagrees with the model's forward pass"):
        reader.read(compile_sop(lib.make_length(), DIGITS, 10))


def test_the_reading_is_what_the_weights_compute():
    """Tracr's categorical -> numerical MLP applies a ReLU: negative values come out as 0. The reading
    says so (and agrees with the model), where the original program does not."""
    out = rasp.numerical(rasp.Map(lambda x: x - 2, rasp.tokens))
    model = compile_sop(out, DIGITS, 3)
    reading = reader.read(model)
    assert reading.ops[0].table == {0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0, 4: 2.0}
    assert forward.run(model, [[0, 4]]) == [[0.0, 2.0]] and rasp.evaluate(out, [0, 4]) == [-2, 2]


def test_reading_speed():
    """Milliseconds per model, verification included (printed with -s)."""
    assert TIMES, "run with the other tests"
    slowest = max(TIMES, key=TIMES.get)
    print(f"\nreader: {1000 * sum(TIMES.values()) / len(TIMES):.1f} ms per model over {len(TIMES)} models, "
          f"slowest {slowest} {1000 * TIMES[slowest]:.1f} ms")
