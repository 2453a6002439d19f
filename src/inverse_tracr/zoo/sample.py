"""One zoo sample: `program.json`, `params.npz`, `meta.json` — written deterministically, read warily.

Writing is byte-reproducible: JSON with sorted keys, and `.npz` archives with a fixed timestamp
(numpy's own `savez` stamps the current time). Reading treats every byte as untrusted: `.npz` is
opened with `allow_pickle=False`, every array must be float32 and finite-sized, and any defect is a
`SampleError` naming the file and the reason.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from typing import Any

import numpy as np

from inverse_tracr.programs import Program, ProgramError

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


def params_from_npz(blob: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            if len(archive.files) > MAX_PARAMS:
                raise SampleError(f"params.npz: more than {MAX_PARAMS} arrays")
            params = {}
            for name in archive.files:
                array = archive[name]
                if array.dtype != np.float32 or array.size > MAX_ARRAY_ELEMENTS:
                    raise SampleError(f"params.npz: {name!r} is {array.dtype} of size {array.size}, expected float32")
                params[name] = array
            return params
    except SampleError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error) or "pickle" in str(error):
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


def decode(files: dict[str, Any], url: str = "") -> Sample:
    """A Sample from a WebDataset sample dict (raw bytes per file)."""
    key = files.get("__key__", "?")
    missing = [name for name in FILES if name not in files]
    if missing:
        raise SampleError(f"sample {key}: missing {', '.join(missing)}")
    try:
        program = Program.from_json(json.loads(files["program.json"]))
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
