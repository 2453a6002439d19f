"""Inverse Tracr: learn to turn transformer weights back into the RASP programs they compute."""

__version__ = "0.1.0"
