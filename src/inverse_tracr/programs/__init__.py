"""RASP programs: the named-function library, canonical lines, conversions, and the sampler."""

from inverse_tracr.programs.program import Program, ProgramError

__all__ = ["Program", "ProgramError"]
