"""`inverse-tracr status`: a zoo's progress read from the store alone (no cluster access needed).

Shards done per kind (from their markers), programs, rejection reasons, the training runs' newest
checkpoints and last figures, and the evaluation reports' headline numbers.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

from inverse_tracr.zoo.manifest import read_config
from inverse_tracr.zoo.shards import KINDS, finished_shards
from inverse_tracr.zoo.store import Store


def _json(store: Store, *parts: str) -> Any:
    return json.loads(store.read_bytes(*parts))


def zoo_status(store_url: str, zoo: str) -> dict[str, Any]:
    store = Store(store_url)
    config = read_config(store, zoo)
    status: dict[str, Any] = {"store": store.url, "zoo": zoo, "config": dataclasses.asdict(config), "kinds": {}, "runs": {}}
    for kind in KINDS:
        done = sorted(finished_shards(store, zoo, kind))
        if not done:
            continue
        markers = [_json(store, zoo, kind, f"shard-{i:06d}.json") for i in done]
        rejections: collections.Counter = collections.Counter()
        for marker in markers:
            rejections.update(marker.get("stats", {}).get("rejections", {}))
        status["kinds"][kind] = {
            "shards": len(done),
            "programs": sum(m["count"] for m in markers),
            "bytes": sum(m["bytes"] for m in markers),
            "rejections": dict(rejections.most_common()),
        }
    for run in store.list(zoo, "meta"):
        checkpoints = sorted(n for n in store.list(zoo, "meta", run, "checkpoints") if store.exists(zoo, "meta", run, "checkpoints", n, "state.json"))
        history = _json(store, zoo, "meta", run, "history.json") if store.exists(zoo, "meta", run, "history.json") else []
        evaluations = {}
        for name in store.list(zoo, "meta", run, "eval"):
            if store.exists(zoo, "meta", run, "eval", name, "report.json"):
                report = _json(store, zoo, "meta", run, "eval", name, "report.json")
                evaluations[name] = {d: {k: s.get(k) for k in ("programs", "token_accuracy", "exact", "functional", "buckets")}
                                     for d, s in report["decodings"].items()}
        status["runs"][run] = {
            "checkpoint": checkpoints[-1] if checkpoints else None,
            "last": history[-1] if history else None,
            "evaluations": evaluations,
        }
    return status


def format_status(status: dict[str, Any]) -> str:
    config = status["config"]
    lines = [f"zoo {status['zoo']} in {status['store']}: programs of {config['min_ops']}-{config['max_ops']} lines, "
             f"vocab {config['vocab_size']}, max_seq_len {config['max_seq_len']}, shard size {config['shard_size']}, seed {config['seed']}"]
    if not status["kinds"]:
        lines.append("  no finished shards yet")
    for kind, k in status["kinds"].items():
        rejected = ", ".join(f"{reason} {n}" for reason, n in list(k["rejections"].items())[:5]) or "none"
        lines.append(f"  {kind}: {k['shards']} shards, {k['programs']} programs, {k['bytes'] / 2**20:.1f} MiB; rejected: {rejected}")
    for run, r in status["runs"].items():
        last = r["last"]
        figures = f", last loss {last['loss']:.3f}, token accuracy {last['token_accuracy']:.3f}" if last else ""
        lines.append(f"  run {run}: newest checkpoint {r['checkpoint'] or 'none'}{figures}")
        for name, decodings in r["evaluations"].items():
            for decoding, s in decodings.items():
                lines.append(f"    eval {name} {decoding}: {s['programs']} programs, tokens {100 * s['token_accuracy']:.1f}%, "
                             f"exact {100 * s['exact']:.1f}%, functional {100 * s['functional']:.1f}%, "
                             f"≥90% {100 * s['buckets']['>=90%']:.1f}%")
    return "\n".join(lines)
