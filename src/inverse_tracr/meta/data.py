"""Training examples from zoo samples, batches, and the streaming dataset over shard URLs.

Streaming goes through WebDataset: shards are split across ranks (`split_by_node`) and data-loader
workers (`split_by_worker`), samples pass a shuffle buffer, and a corrupt shard or sample is skipped
with a warning (`warn_and_continue`) instead of stopping training. Training sees each sample many
times (16 epochs in 2,000 steps of 4,000 programs), so decoded examples are kept in memory
(`Cache`) for the epochs to come.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
import sys
from typing import Sequence

import numpy as np
import torch
import webdataset as wds

from inverse_tracr.meta import vocab, weights
from inverse_tracr.meta.augment import augment
from inverse_tracr.zoo import sample as sample_format
from inverse_tracr.zoo.shards import expand
from inverse_tracr.zoo.splits import split_of
from inverse_tracr.zoo.store import register_webdataset_schemes


#: Value indices a table entry's position tells apart (`vocab.Grammar.entry`; larger ones share
#: the last row); row ENTRY_VALUES of the embedding stands for "no such value".
ENTRY_VALUES = weights.SLOTS


@dataclasses.dataclass
class Example:
    key: str
    features: np.ndarray  # [N, FEATURES]
    ids: list[int]  # BOS … EOS
    entries: np.ndarray  # [len(ids), 2]: where the token after each one sits in its table (`entry_rows`)
    heads: np.ndarray | None = None  # [N]: each weight token's attention head (`weights.heads`), if asked for


def example(sample: sample_format.Sample, max_chunks: int, weight_tokens: str, heads: bool = False) -> Example | None:
    """The training example of a sample; None if its program has no tokens (`vocab.Untokenizable`).
    `heads`: with each weight token's attention head, for permuting heads (`meta.augment`)."""
    try:
        ids, entries = _encode(sample.program)
    except vocab.Untokenizable:
        return None
    features = weights.features(sample.params, weight_tokens)[:max_chunks]
    head_of = weights.heads(sample.params, sample.meta["model"]["num_heads"])[:max_chunks] if heads else None
    return Example(sample.key, features, list(ids), entries, head_of)


@functools.lru_cache(maxsize=1 << 15)
def _encode(program) -> tuple[tuple[int, ...], np.ndarray]:
    """`vocab.encode` and its entries, remembered per program (equal ids, equal programs) for the epochs to come."""
    ids = tuple(vocab.encode(program))
    return ids, entry_rows(vocab.entries(ids, program.vocab, program.max_seq_len))


def entry_rows(entries: Sequence[tuple[int, int | None] | None]) -> np.ndarray:
    """[n, 2] embedding rows of `vocab.Grammar.entry` results: each operand's value index, or
    ENTRY_VALUES where there is none."""
    rows = np.full((len(entries), 2), ENTRY_VALUES, np.int64)
    for i, entry in enumerate(entries):
        for j, value in enumerate(entry or ()):
            if value is not None:
                rows[i, j] = min(value, ENTRY_VALUES - 1)
    return rows


class Cache:
    """Decoded examples kept for later epochs, up to `limit_mb` of weight tokens per process (each
    loader worker reads its own shards, so workers keep different examples). Decoding a sample —
    its npz, its weight tokens — costs ~4 ms on one core, as much as a step of `tiny` spends on it:
    measured on 2 cores, the loader was what bounded training. An example is a pure function of its
    sample's bytes, so keeping it changes nothing but the time."""

    def __init__(self, limit_mb: int):
        self.room = limit_mb << 20
        self.kept: dict[tuple[str, str], Example | None] = {}

    def get(self, files: dict, decode) -> Example | None:
        key = (files.get("__url__", ""), files["__key__"])
        if key in self.kept:
            return self.kept[key]
        example = decode(files)
        size = 0 if example is None else example.features.nbytes
        if size <= self.room:
            self.kept[key], self.room = example, self.room - size
        return example


def pad_features(features: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight tokens of several models, zero-padded to the longest: features [B, N, width], mask [B, N]."""
    n = max(len(f) for f in features)
    padded, mask = torch.zeros(len(features), n, features[0].shape[1]), torch.zeros(len(features), n)
    for i, f in enumerate(features):
        padded[i, : len(f)] = torch.from_numpy(f)
        mask[i, : len(f)] = 1
    return padded, mask


def collate(examples: list[Example]) -> dict[str, torch.Tensor]:
    """Pad to the longest in the batch. Program input is ids[:-1], the target ids[1:]."""
    features, weight_mask = pad_features([e.features for e in examples])
    t = max(len(e.ids) for e in examples) - 1
    batch = {
        "features": features,
        "weight_mask": weight_mask,
        "program_in": torch.full((len(examples), t), vocab.PAD_ID, dtype=torch.long),
        "targets": torch.full((len(examples), t), vocab.PAD_ID, dtype=torch.long),
        "program_mask": torch.zeros(len(examples), t),
        "entries": torch.full((len(examples), t, 2), ENTRY_VALUES, dtype=torch.long),
    }
    for i, e in enumerate(examples):
        ids = torch.tensor(e.ids)
        batch["program_in"][i, : len(ids) - 1] = ids[:-1]
        batch["targets"][i, : len(ids) - 1] = ids[1:]
        batch["program_mask"][i, : len(ids) - 1] = 1
        batch["entries"][i, : len(ids) - 1] = torch.from_numpy(e.entries[:-1])
    return batch


def by_size(batch_size: int, pool: int, seed: int = 0):
    """A pipeline stage: examples in, collated batches out, each of examples of similar size.

    A batch costs its longest example times its size (everything is padded to the longest), and
    a zoo's models and programs vary ~5x in length: random batches of 32 are half padding
    (measured on 4–8-op programs: 49 % of weight tokens, 43 % of program tokens are real). So
    `pool` batches' worth of (already shuffled) examples are sorted by length, cut into batches,
    and the batches handed out in a seeded random order: with `pool` 16, 73 % of the positions a
    step computes are real, and a step of `tiny` takes 0.06 s instead of 0.10 s. `pool` 1 keeps
    random batches. The stage is deterministic, so a resumed run skips the batches it had consumed."""

    def stage(examples):
        order = random.Random(seed)
        while group := list(itertools.islice(examples, batch_size * pool)):
            group.sort(key=lambda e: len(e.features) + len(e.ids))
            batches = [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
            order.shuffle(batches)
            yield from map(collate, batches)

    return stage


def quiet_handover(worker_id: int) -> None:
    """A data-loader worker's `worker_init_fn`. Workers hand batches to the trainer as file
    descriptors, served by a background thread; when the trainer stops mid-handover (Ctrl-C, a
    preempted pod), that thread's lost connection is expected and is not printed as a traceback
    (measured: 1 interrupted run in 3 printed one)."""
    report = sys.excepthook

    def excepthook(kind, value, traceback):
        if not issubclass(kind, (ConnectionError, EOFError)):
            report(kind, value, traceback)

    sys.excepthook = excepthook


def stream(urls, split: str | None, max_chunks: int, shuffle_buffer: int = 1000, seed: int = 0, repeat: bool = True,
           weight_tokens: str = weights.DEFAULT_FORM, cache_mb: int = 0, symmetries: Sequence[str] = ()):
    """An IterableDataset of Examples from shard URLs (any store; brace patterns allowed); decoded
    examples are kept up to `cache_mb` per process (`Cache`), and each one handed out is drawn
    anew under `symmetries` (`meta.augment`; seeded: a resumed run draws the same)."""
    register_webdataset_schemes()
    cache = Cache(cache_mb)
    rng = np.random.default_rng(seed)

    def draw(e: Example) -> Example:
        return dataclasses.replace(e, features=augment(e.features, symmetries, rng, e.heads))

    def decode(files):
        return cache.get(files, lambda f: example(sample_format.decode(f, f.get("__url__", "")), max_chunks, weight_tokens, "heads" in symmetries))

    def wanted(files):
        return split is None or split_of(files["__key__"]) == split

    dataset = wds.WebDataset(
        expand(urls),
        shardshuffle=1000 if shuffle_buffer else False,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        handler=wds.warn_and_continue,
        empty_check=False,
        seed=seed,
    )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.select(wanted)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.map(decode, handler=wds.warn_and_continue).select(lambda e: e is not None)
    return dataset.map(draw) if symmetries else dataset
