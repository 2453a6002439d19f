"""A zoo store: any fsspec URL (local path, file://, gs://, s3://) with whole-object writes.

Objects are written whole: on object stores a single upload is atomic; on a local disk the bytes go
to a temporary file that is renamed into place. So a reader never sees half a shard under its
final name, and a crash leaves at worst a temporary file that the next run overwrites.

Credentials and endpoints come from the usual places (gcloud/AWS environment, workload identity) or
from fsspec's own `FSSPEC_<PROTOCOL>_<OPTION>` variables, e.g. `FSSPEC_S3_ENDPOINT_URL`.
"""

from __future__ import annotations

import importlib
import os
import uuid

# gcsfs's experimental zonal-bucket support probes every bucket and stalls ~60 s where the probe
# is not answered (emulators, some proxies); we use no zonal features. Must precede gcsfs's import.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec  # noqa: E402
from fsspec.implementations.local import LocalFileSystem  # noqa: E402


class StoreError(RuntimeError):
    """The store cannot be reached or used; the message says which store and why."""


class Store:
    """Relative paths under one root URL."""

    def __init__(self, url: str):
        self.url = str(url).rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as error:
            raise StoreError(f"unsupported store URL {url!r}: {error}") from None

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def url_of(self, *parts: str) -> str:
        """A full URL another process (or WebDataset) can open."""
        return "/".join([self.url, *parts])

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except Exception as error:  # noqa: BLE001 - network/auth errors come in many types
            raise StoreError(f"cannot {what} in store {self.url}: {type(error).__name__}: {error}") from None

    def exists(self, *parts: str) -> bool:
        return self._call("look up objects", self.fs.exists, self.path(*parts))

    def read_bytes(self, *parts: str) -> bytes:
        return self._call("read objects", self.fs.cat_file, self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> None:
        target = self.path(*parts)
        if isinstance(self.fs, LocalFileSystem):
            parent = target.rsplit("/", 1)[0]
            self._call("create folders", self.fs.makedirs, parent, True)
            temporary = f"{target}.tmp-{uuid.uuid4().hex}"
            self._call("write objects", self.fs.pipe_file, temporary, data)
            os.replace(temporary, target)
        else:
            self._call("write objects", self.fs.pipe_file, target, data)

    def list(self, *parts: str, suffix: str = "") -> list[str]:
        """Names (not paths) of the objects directly under a folder, sorted; [] if there is none."""
        try:
            entries = self._call("list objects", self.fs.ls, self.path(*parts), False)
        except FileNotFoundError:
            return []
        names = sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        return [name for name in names if name.endswith(suffix)]


def open_url(url: str, mode: str = "rb"):
    """Open any fsspec URL as a file object (used for shards given by URL)."""
    return fsspec.open(url, mode).open()


def register_webdataset_schemes() -> None:
    """Let `webdataset.WebDataset("gs://…" / "s3://…")` read through fsspec.

    WebDataset's own `gs` handler shells out to `gsutil`; in webdataset 1.0.2 the attribute
    `webdataset.gopen` is the function, so the module is looked up by name.
    """
    gopen = importlib.import_module("webdataset.gopen")
    for scheme in ("gs", "gcs", "s3"):
        gopen.gopen_schemes[scheme] = lambda url, mode="rb", bufsize=8192, **kw: open_url(url, mode)
