"""The zoo's identity: its config, recorded once in `<store>/<zoo>/zoo.json`.

A shard is a function of this config, the seed and its index, so mixing shards made under two
configs would silently mix two different zoos. A run whose config differs from the recorded one is
refused, with the differing settings named.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import metadata
from typing import Any

from inverse_tracr.errors import InverseTracrError
from inverse_tracr.zoo.config import ZooConfig
from inverse_tracr.zoo.sample import dumps
from inverse_tracr.zoo.store import Store

#: Version 2: programs are tables (ids and targets changed); a version-1 zoo is refused.
ZOO_FORMAT = "inverse-tracr/zoo/2"


class ZooConfigError(InverseTracrError, ValueError):
    """The zoo exists with another config, or its zoo.json is unreadable."""


@functools.cache
def versions() -> dict[str, str]:
    packages = ("inverse-tracr", "tracr-pypi", "jax", "dm-haiku", "numpy", "webdataset")
    return {name: metadata.version(name) for name in packages}


def differences(recorded: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """`name=recorded (asked wanted)` for each setting that differs, nested ones as `a.b`: how every
    stage that refuses to continue work begun with other settings names them."""
    out = []
    for name in sorted(set(recorded) | set(wanted)):
        old, new = recorded.get(name), wanted.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            out += differences(old, new, f"{prefix}{name}.")
        elif old != new:
            out.append(f"{prefix}{name}={old!r} (asked {new!r})")
    return out


def open_zoo(store: Store, zoo: str, config: ZooConfig) -> None:
    """Record the config in zoo.json, or check that the recorded one is the same."""
    if not store.exists(zoo, "zoo.json"):
        record = {"format": ZOO_FORMAT, "config": dataclasses.asdict(config), "versions": versions()}
        store.write_bytes(dumps(record), zoo, "zoo.json")
        return
    recorded = read_config(store, zoo)
    if recorded != config:
        changed = differences(dataclasses.asdict(recorded), dataclasses.asdict(config))
        raise ZooConfigError(
            f"zoo {zoo!r} in {store.url} was made with {', '.join(changed)}; "
            "use the same settings to continue it, or another --zoo name"
        )


def read_config(store: Store, zoo: str) -> ZooConfig:
    try:
        record: Any = json.loads(store.read_bytes(zoo, "zoo.json"))
        if record.get("format") != ZOO_FORMAT:
            raise ZooConfigError(
                f"zoo {zoo!r} in {store.url} was written in format {record.get('format')!r}, which this "
                f"version cannot read ({ZOO_FORMAT}: programs are tables now, so ids and labels changed); "
                "generate it again under another --zoo name, or delete it first"
            )
        return ZooConfig(**record["config"])
    except FileNotFoundError:
        raise ZooConfigError(f"no zoo {zoo!r} in {store.url} (no zoo.json)") from None
    except (ValueError, TypeError, KeyError) as error:
        raise ZooConfigError(f"unreadable zoo.json of {zoo!r} in {store.url}: {error}") from None
