"""WebDataset shards of a zoo: `<store>/<zoo>/<kind>/shard-000123.tar` and its `.json` marker.

The marker is written only after the tar is complete, so "marker exists" means "shard finished":
a rerun skips it, and a run killed mid-shard leaves no marker, so the shard is redone — with the
same bytes, because a shard is a pure function of (zoo config, seed, index) and the tar is written
with fixed timestamps and owners. Timings vary from run to run, so they live in the marker, never
in the tar.

Reading goes through WebDataset's own tar iterators over fsspec streams. A corrupt or truncated
shard, or a malformed sample, is reported by name (a warning, and in `Reader.errors`) and reading
goes on with the next sample or shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import tarfile
from typing import Any, Iterable, Iterator

import braceexpand
import webdataset as wds
from webdataset import tariterators

from inverse_tracr.zoo import sample as sample_format
from inverse_tracr.zoo.splits import split_of
from inverse_tracr.zoo.store import Store, StoreError, open_url

log = logging.getLogger(__name__)
KINDS = ("standard", "compressed", "natural")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def write_shard(store: Store, zoo: str, kind: str, index: int, samples: list[dict[str, bytes]], stats: dict[str, Any]) -> dict[str, Any]:
    """Write the tar, then its marker (count, bytes, sha256, program ids, stats); return the marker."""
    buffer = io.BytesIO()
    writer = wds.TarWriter(buffer, mtime=0.0, user="inverse-tracr", group="inverse-tracr")
    for files in samples:
        writer.write(files)
    writer.close()
    blob = buffer.getvalue()
    store.write_bytes(blob, zoo, kind, f"{shard_name(index)}.tar")
    marker = {
        "shard": index,
        "kind": kind,
        "count": len(samples),
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "ids": [files["__key__"] for files in samples],
        "stats": stats,
    }
    store.write_bytes(sample_format.dumps(marker), zoo, kind, f"{shard_name(index)}.json")
    return marker


def part_of(items: list, part: tuple[int, int]) -> list:
    """The K-th of N contiguous slices of `items` (part = (K, N)); sizes differ by at most one."""
    k, n = part
    return items[k * len(items) // n : (k + 1) * len(items) // n]


def finished_shards(store: Store, zoo: str, kind: str) -> set[int]:
    """Indices of shards whose marker exists."""
    found = set()
    for name in store.list(zoo, kind, suffix=".json"):
        stem = name[: -len(".json")]
        if stem.startswith("shard-") and stem[6:].isdigit():
            found.add(int(stem[6:]))
    return found


def read_marker(store: Store, zoo: str, kind: str, index: int) -> dict[str, Any]:
    return json.loads(store.read_bytes(zoo, kind, f"{shard_name(index)}.json"))


def shard_urls(store: Store, zoo: str, kind: str = "standard") -> list[str]:
    """URLs of the finished shards of a zoo, in index order."""
    return [store.url_of(zoo, kind, f"{shard_name(i)}.tar") for i in sorted(finished_shards(store, zoo, kind))]


def expand(urls: str | Iterable[str]) -> list[str]:
    """Shard URLs from a URL, a brace pattern (`shard-{000000..000009}.tar`), or a list of those."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    return [url for pattern in urls for url in braceexpand.braceexpand(pattern)]


@dataclasses.dataclass
class Reader:
    """Iterates the samples of shards; bad shards and samples are skipped and listed in `errors`.

    `split` keeps only programs of that split (by program-id hash, `zoo.splits`); `unique` skips a
    program id already seen (zoo-level deduplication: the first shard wins); `warn` logs each error.
    """

    urls: str | Iterable[str]
    split: str | None = None
    unique: bool = True
    warn: bool = True
    errors: list[str] = dataclasses.field(default_factory=list)

    def __iter__(self) -> Iterator[sample_format.Sample]:
        seen: set[str] = set()
        for url in expand(self.urls):
            for files in self._raw(url):
                key = files.get("__key__", "?")
                if self.unique and key in seen:
                    continue
                if self.split is not None and split_of(key) != self.split:
                    continue
                try:
                    sample = sample_format.decode(files, url)
                except sample_format.SampleError as error:
                    self._error(f"{url}: {error}")
                    continue
                seen.add(key)
                yield sample

    def _raw(self, url: str) -> Iterator[dict[str, Any]]:
        try:
            with open_url(url) as stream:
                files = ({**f, "__url__": url} for f in tariterators.tar_file_iterator(stream))
                yield from tariterators.group_by_keys(files)
        except FileNotFoundError:
            self._error(f"{url}: no such shard")
        except (tarfile.TarError, EOFError, OSError, ValueError, StoreError) as error:
            self._error(f"{url}: corrupt or truncated shard ({type(error).__name__}: {error})")

    def _error(self, message: str) -> None:
        if self.warn:
            log.warning("skipping: %s", message)
        self.errors.append(message)


def read_samples(urls: str | Iterable[str], split: str | None = None) -> Iterator[sample_format.Sample]:
    """Samples from shard URLs (any fsspec URL, brace patterns allowed), skipping bad ones with a warning."""
    return iter(Reader(urls, split=split))
