"""Model zoos: samples, WebDataset shards on any fsspec store, splits, and zoo generation."""

import importlib

#: The package's public names and their modules. They load on first use: the CLI imports this
#: package's settings (`zoo.config`) for its defaults, and the shard readers bring in WebDataset
#: and torch, which would make every `--help` wait seconds.
_EXPORTS = {"Reader": "shards", "read_samples": "shards", "Sample": "sample", "SampleError": "sample", "split_of": "splits"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
