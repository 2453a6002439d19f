"""Programs the compilation and verification tests share: four of Tracr's lib programs, four sampled ones."""

from __future__ import annotations

import random

from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.programs import Program
from inverse_tracr.programs.sampler import SamplerConfig, sample_program


def _programs():
    lib_programs = [
        lib.make_sort_unique(rasp.tokens, rasp.tokens),
        lib.make_hist(),
        lib.make_reverse(rasp.tokens),
        lib.make_frac_prevs(rasp.tokens == 1),
    ]
    sampled = [sample_program(random.Random(seed), SamplerConfig(4, 7)) for seed in range(4)]
    return [Program.from_rasp(p) for p in lib_programs] + sampled


PROGRAMS = _programs()
