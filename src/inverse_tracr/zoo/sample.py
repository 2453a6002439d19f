"""One zoo sample: `program.json`, `params.npz`, `meta.json` — written deterministically, read warily.

Writing is byte-reproducible: JSON with sorted keys, and `.npz` archives with a fixed timestamp
(numpy's own `savez` stamps the current time). Reading treats every byte as untrusted: `.npz` is
read with `allow_pickle=False` (our own float32 arrays by a fast path that accepts nothing else),
every array must be float32 and of bounded size, and any defect is a `SampleError` naming the file
and the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import re
import zipfile
from typing import Any

import numpy as np

from inverse_tracr.programs import Program, ProgramError

#: The sample format; version 2: programs of tables (`programs.program.FORMAT`), exhaustive checks.
SAMPLE_FORMAT = "inverse-tracr/sample/2"
FILES = ("program.json", "params.npz", "meta.json")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MAX_PARAMS = 512
MAX_ARRAY_ELEMENTS = 2**26


class SampleError(ValueError):
    """A sample that cannot be read; the message names the file and what is wrong."""


@dataclasses.dataclass
class Sample:
    """A program and the weights of a model that computes it."""

    key: str
    program: Program
    params: dict[str, np.ndarray]
    meta: dict[str, Any]
    url: str = ""

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "standard")


def dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def params_to_npz(params: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(params):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            array = io.BytesIO()
            np.lib.format.write_array(array, np.ascontiguousarray(params[name], dtype=np.float32), allow_pickle=False)
            archive.writestr(info, array.getvalue())
    return buffer.getvalue()


# The header numpy writes for a C-ordered little-endian float32 array: the only kind we store.
_FLOAT32_HEADER = re.compile(rb"\{'descr': '<f4', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}\s*\n")


def _read_npy(data: bytes) -> np.ndarray:
    """One .npy member. Fast path for our float32 arrays (np.load parses every header with
    literal_eval: ~11 ms a sample, most of the loader's time); anything else goes through numpy's
    reader with allow_pickle=False."""
    if data[:8] == b"\x93NUMPY\x01\x00":
        length = int.from_bytes(data[8:10], "little")
        match = _FLOAT32_HEADER.fullmatch(data[10 : 10 + length])
        if match:
            shape = tuple(int(n) for n in match[1].split(b",") if n.strip())
            return np.frombuffer(data, dtype="<f4", offset=10 + length).reshape(shape).copy()
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def params_from_npz(blob: bytes) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = archive.infolist()
            if len(members) > MAX_PARAMS:
                raise SampleError(f"params.npz: more than {MAX_PARAMS} arrays")
            params = {}
            for member in members:
                if member.file_size > 4 * MAX_ARRAY_ELEMENTS + 4096:
                    raise SampleError(f"params.npz: {member.filename!r} is too large")
                array = _read_npy(archive.read(member))
                if array.dtype != np.float32:
                    raise SampleError(f"params.npz: {member.filename!r} is {array.dtype}, expected float32")
                params[member.filename.removesuffix(".npy")] = array
            return params
    except SampleError:
        raise
    except ValueError as error:
        if "pickle" in str(error):
            raise SampleError("params.npz holds pickled objects; refusing to load them") from None
        raise SampleError(f"params.npz is not a valid .npz archive: {error}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise SampleError(f"params.npz is not a valid .npz archive: {error}") from None


def encode(program: Program, params: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, bytes]:
    """The files of one sample (WebDataset key: the program id)."""
    return {
        "__key__": program.id,
        "program.json": dumps(program.to_json()),
        "params.npz": params_to_npz(params),
        "meta.json": dumps(meta),
    }


@functools.lru_cache(maxsize=1 << 15)
def _program(text: bytes | str) -> Program:
    """A program from its JSON, remembered: training reads every sample once per epoch, and
    parsing and canonicalising a program took a third of decoding a sample (~0.4 of 1.3 ms).
    Programs are immutable, so sharing one between samples is safe; errors are not remembered."""
    return Program.from_json(json.loads(text))


def decode(files: dict[str, Any], url: str = "") -> Sample:
    """A Sample from a WebDataset sample dict (raw bytes per file)."""
    key = files.get("__key__", "?")
    missing = [name for name in FILES if name not in files]
    if missing:
        raise SampleError(f"sample {key}: missing {', '.join(missing)}")
    try:
        program = _program(files["program.json"])
    except (ValueError, ProgramError) as error:  # JSONDecodeError is a ValueError
        raise SampleError(f"sample {key}: malformed program.json: {error}") from None
    if program.id != key:
        raise SampleError(f"sample {key}: key does not match the program id {program.id}")
    try:
        meta = json.loads(files["meta.json"])
    except ValueError as error:
        raise SampleError(f"sample {key}: malformed meta.json: {error}") from None
    if not isinstance(meta, dict):
        raise SampleError(f"sample {key}: meta.json must be a JSON object")
    try:
        params = params_from_npz(files["params.npz"])
    except SampleError as error:
        raise SampleError(f"sample {key}: {error}") from None
    return Sample(key, program, params, meta, url)
