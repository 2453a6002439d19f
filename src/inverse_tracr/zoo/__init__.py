"""Model zoos: samples, WebDataset shards on any fsspec store, splits, and zoo generation."""

from inverse_tracr.zoo.sample import Sample, SampleError
from inverse_tracr.zoo.shards import Reader, read_samples
from inverse_tracr.zoo.splits import split_of

__all__ = ["Reader", "Sample", "SampleError", "read_samples", "split_of"]
