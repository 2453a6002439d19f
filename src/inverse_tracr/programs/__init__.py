"""RASP programs: the named-function library, canonical lines, conversions, the sampler, and where Tracr puts each line."""

from inverse_tracr.programs.program import Program, ProgramError

__all__ = ["Program", "ProgramError"]
