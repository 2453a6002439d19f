"""Train/validation/test split by program id.

A random split lets a program (or its duplicate in another shard) land in both train and
validation. Splitting by a hash of the canonical program puts every copy of a program, in every
zoo kind (standard, compressed, natural), in the same split.
"""

from __future__ import annotations

import hashlib

SPLITS = {"train": 0.90, "val": 0.05, "test": 0.05}


def split_of(program_id: str) -> str:
    """'train', 'val' or 'test', a fixed function of the program id."""
    digest = hashlib.sha256(f"split:{program_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in SPLITS.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return name
