"""Human-readable view of one zoo sample, re-checked: the stored weights are run (NumPy forward
pass, no JAX) on fresh inputs and compared with `rasp.evaluate` again."""

from __future__ import annotations

import json

import numpy as np

from inverse_tracr.compile import forward
from inverse_tracr.compile.model import CompiledModel, Layout
from inverse_tracr.compile.verify import expected_outputs, make_inputs, verify
from inverse_tracr.programs import values
from inverse_tracr.zoo.sample import Sample
from inverse_tracr.zoo.shards import Reader
from inverse_tracr.zoo.splits import split_of


def find_sample(url: str, key: str | None = None, index: int = 0) -> tuple[Sample | None, list[str]]:
    """The sample with program id `key` (or at position `index`) in the shard, and read errors."""
    reader = Reader(url, unique=False, warn=False)
    for position, sample in enumerate(reader):
        if (key is not None and sample.key == key) or (key is None and position == index):
            return sample, reader.errors
    if not reader.errors:
        reader.errors.append(f"{url}: no sample {'with key ' + key if key else f'at index {index}'}")
    return None, reader.errors


def describe(sample: Sample, examples: int = 3) -> str:
    program = sample.program
    out = [
        f"sample {sample.key} ({sample.kind}, split {split_of(sample.key)}) from {sample.url}",
        f"program: {len(program.lines)} lines, vocab {list(program.vocab)}, max_seq_len {program.max_seq_len}",
        *("  " + line for line in program.source().splitlines()),
        "canonical lines (op, arg1, arg2, ret: function as a table on the arguments' values, in their order):",
        *(f"  {line.op:<22} {' '.join(f'{a:<8}' for a in line.fields()[2:4])} {line.ret:<5} {_table(line)}" for line in program.lines),
    ]
    try:
        layout = Layout.from_json(sample.meta["model"])
    except (KeyError, ValueError) as error:
        return "\n".join(out + [f"model: unreadable layout ({error})"])
    total = sum(int(np.prod(a.shape)) for a in sample.params.values())
    out += [
        f"model: {layout.num_layers} layers of (attn, mlp), {layout.num_heads} head(s), key size {layout.key_size}, "
        f"MLP hidden {layout.mlp_hidden_size}, residual width {layout.residual_width}, "
        f"{'categorical' if layout.output_values is not None else 'numerical'} output",
        f"parameters: {len(sample.params)} tensors, {total:,} floats",
        *(f"  {name:<40} {' x '.join(map(str, array.shape))}" for name, array in sorted(sample.params.items())),
    ]
    stored = sample.meta.get("verification", {})
    out.append(
        f"verification (stored): {'passed' if stored.get('passed') else 'NOT passed'}, "
        f"{stored.get('inputs')} inputs, {stored.get('positions')} positions, {stored.get('mismatches')} mismatches"
    )
    model = CompiledModel(sample.params, layout)
    inputs = make_inputs(program, 32, seed=1)
    expected, reason = expected_outputs(program, inputs)
    if expected is None:
        out.append(f"re-check: the program itself fails screening now ({reason})")
        return "\n".join(out)
    try:
        check = verify(model, inputs, expected)
        got = forward.run(model, inputs[:examples])
    except (KeyError, ValueError, IndexError) as error:
        out.append(f"re-check: the stored weights cannot be run ({type(error).__name__}: {error})")
        return "\n".join(out)
    out.append(f"re-check on 32 fresh inputs: {'passed' if check.passed else 'FAILED'} ({check.mismatches} mismatches in {check.positions} positions)")
    for xs, want, have in zip(inputs, expected, got):
        out.append(f"  {xs} -> rasp {want} | model {_round(have)}")
    return "\n".join(out)


def _table(line) -> str:
    return "" if line.fn is None else json.dumps([values.to_json(v) for v in line.fn], separators=(",", ":"))


def _round(values: list) -> list:
    return [round(v, 4) if isinstance(v, float) else v for v in values]
