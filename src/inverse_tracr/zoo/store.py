"""A zoo store: any fsspec URL (local path, file://, gs://, s3://) with whole-object writes.

Objects are written whole: on object stores a single upload is atomic; on a local disk the bytes go
to a temporary file that is renamed into place. So a reader never sees half a shard under its
final name, and a crash leaves at worst a temporary file that the next run overwrites.

Credentials and endpoints come from the usual places (gcloud/AWS environment, workload identity) or
from fsspec's own `FSSPEC_<PROTOCOL>_<OPTION>` variables, e.g. `FSSPEC_S3_ENDPOINT_URL` (the Helm
chart pins `FSSPEC_GS_TOKEN=google_default`). In pods, the first contact with a remote store is
retried with backoff (`INVERSE_TRACR_STORE_ATTEMPTS`, set by the chart): pods that start by the
hundred can find their credentials (the metadata server behind workload identity) or the endpoint
not ready for a few seconds. Elsewhere, and after one success, errors are not retried here (the
store clients retry transient HTTP errors themselves): a wrong URL fails at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import uuid

# gcsfs's experimental zonal-bucket support probes every bucket and stalls ~60 s where the probe
# is not answered (emulators, some proxies); we use no zonal features. Must precede gcsfs's import.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec  # noqa: E402
from fsspec.implementations.local import LocalFileSystem  # noqa: E402

from inverse_tracr.errors import InverseTracrError


class StoreError(InverseTracrError, RuntimeError):
    """The store cannot be reached or used; the message says which store and why."""


#: Attempts at the first contact with a remote store (default: this variable, else 1), and the first
#: wait between two of them, doubled after each failure up to MAX_DELAY: 6 attempts wait 31 s in all.
ATTEMPTS_VARIABLE = "INVERSE_TRACR_STORE_ATTEMPTS"
FIRST_CONTACT_DELAY = 1.0
MAX_DELAY = 16.0

_log = logging.getLogger(__name__)


class Store:
    """Relative paths under one root URL."""

    def __init__(self, url: str, attempts: int | None = None, delay: float = FIRST_CONTACT_DELAY):
        self.url = str(url).rstrip("/")
        local = "://" not in self.url or self.url.startswith("file://")
        if attempts is None:
            try:
                attempts = max(1, int(os.environ.get(ATTEMPTS_VARIABLE, "1")))
            except ValueError:
                raise StoreError(f"{ATTEMPTS_VARIABLE} must be a whole number, not {os.environ[ATTEMPTS_VARIABLE]!r}") from None
        self._attempts, self._delay, self._contacted = 1 if local else attempts, delay, False
        self.fs, self.root = self._call("connect", self._connect)
        self._contacted = False  # connecting needs no answer from the store (gcsfs and s3fs connect lazily)

    def _connect(self):
        try:
            return fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as error:
            raise StoreError(f"unsupported store URL {self.url!r}: {error}") from None

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def url_of(self, *parts: str) -> str:
        """A full URL another process (or WebDataset) can open."""
        return "/".join([self.url, *parts])

    def _call(self, what: str, fn, *args):
        """fn(*args); until the store has answered once, a failure is retried with backoff."""
        attempt = 1
        while True:
            try:
                result = fn(*args)
                break
            except StoreError:
                raise
            except FileNotFoundError:
                self._contacted = True  # an answer
                raise
            except Exception as error:  # noqa: BLE001 - network/auth errors come in many types
                if self._contacted or attempt >= self._attempts:
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    where = f"to store {self.url}" if what == "connect" else f"in store {self.url}"
                    raise StoreError(f"cannot {what} {where}{tries}: {type(error).__name__}: {error}") from None
                wait = min(self._delay * 2 ** (attempt - 1), MAX_DELAY)
                _log.warning("store %s: cannot %s yet (%s: %s); attempt %d of %d in %.0f s",
                             self.url, what, type(error).__name__, error, attempt + 1, self._attempts, wait)
                time.sleep(wait)
                attempt += 1
        self._contacted = True
        return result

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
