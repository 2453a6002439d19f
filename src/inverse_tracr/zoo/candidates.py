"""One zoo candidate, start to end, in a worker process: sample → screen → compile → verify → read → encode.

Every step is a pure function of (sampler config, seed, shard, candidate index), so a candidate
gives the same sample bytes (or the same rejection) wherever and whenever it runs.
"""

from __future__ import annotations

import random
import time
from typing import Any

from inverse_tracr.compile import reader
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.check import Behaviour
from inverse_tracr.compile.verify import EXHAUSTIVE_LIMIT, Verification, check_inputs, input_space, screen
from inverse_tracr.programs.sampler import SamplerConfig, SamplerError, sample_program
from inverse_tracr.zoo import sample as sample_format
from inverse_tracr.zoo.manifest import versions
from inverse_tracr.zoo.sample import SAMPLE_FORMAT


def candidate_rng(seed: int, shard: int, candidate: int) -> random.Random:
    return random.Random(f"inverse-tracr:{seed}:{shard}:{candidate}")


def build_candidate(payload: dict[str, Any]) -> dict[str, Any]:
    """{'files', 'id', 'ops', 'compile_seconds'} for an accepted candidate, else {'reason', …}."""
    config = SamplerConfig(**payload["sampler"])
    seed, shard, candidate = payload["seed"], payload["shard"], payload["candidate"]
    try:
        program = sample_program(candidate_rng(seed, shard, candidate), config)
    except SamplerError:
        return {"reason": "sampler_dead_end"}
    inputs = check_inputs(program, payload["verify_inputs"], seed=seed)
    expected, reason = screen(program, inputs)
    if reason is not None:
        return {"reason": reason, "ops": len(program.lines)}
    started = time.perf_counter()
    try:
        model = compile_program(program)
    except Exception as error:  # noqa: BLE001 - Tracr fails in many ways; each is a rejection
        return {"reason": f"compile_error:{type(error).__name__}", "ops": len(program.lines)}
    compile_seconds = time.perf_counter() - started
    exhaustive = input_space(program.vocab, program.max_seq_len) <= EXHAUSTIVE_LIMIT
    verification = Verification.of(Behaviour(model, inputs, exhaustive).agreement(program, expected))
    if not verification.passed:
        return {"reason": "wrong_output", "ops": len(program.lines)}
    # The label must be what the weights say: the exact reader gives the program they determine.
    try:
        read = reader.read(model, verify=False).program
    except reader.NotCompiledLayout:
        return {"reason": "unreadable_weights", "ops": len(program.lines)}
    if read != program:
        return {"reason": "label_not_read_back", "ops": len(program.lines)}
    meta = {
        "format": SAMPLE_FORMAT,
        "kind": "standard",
        "program_id": program.id,
        "teacher_id": None,
        "seed": seed,
        "shard": shard,
        "candidate": candidate,
        "model": model.layout.to_json(),
        "verification": verification.to_json(),
        "versions": versions(),
    }
    return {
        "files": sample_format.encode(program, model.params, meta),
        "id": program.id,
        "ops": len(program.lines),
        "compile_seconds": compile_seconds,
    }
