"""The one base of the errors a user can act on (a bad option, a store that refuses, a run that
exists with other settings): the CLI prints them as one line, never as a traceback. Each stage
keeps its own subclass, so a caller can still tell them apart."""

from __future__ import annotations


class InverseTracrError(Exception):
    """A failure explained by its message; anything else is a bug and keeps its traceback."""
