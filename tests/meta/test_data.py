"""Training data: batches of similar size, and a loader worker that prints real errors, not a handover the trainer abandoned."""

from __future__ import annotations

import sys

import itertools

from inverse_tracr.meta.data import by_size, example, quiet_handover, stream
from inverse_tracr.zoo import read_samples


def test_a_loader_worker_prints_real_errors_but_not_a_handover_the_trainer_abandoned(capsys, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    quiet_handover(0)
    for error in (ConnectionResetError(104, "Connection reset by peer"), EOFError(), ValueError("a real error")):
        try:
            raise error
        except Exception:  # noqa: BLE001 - as multiprocessing.resource_sharer reports its thread's errors
            sys.excepthook(*sys.exc_info())
    printed = capsys.readouterr().err
    assert "ValueError: a real error" in printed
    assert "ConnectionResetError" not in printed and "EOFError" not in printed


def _rows(batch) -> list[tuple[int, tuple[int, ...]]]:
    """(weight tokens, program ids) of each example in a collated batch."""
    rows = []
    for i, length in enumerate(batch["program_mask"].sum(1).long().tolist()):
        ids = (*batch["program_in"][i, :length].tolist(), batch["targets"][i, length - 1].item())
        rows.append((int(batch["weight_mask"][i].sum()), ids))
    return rows


def test_batches_by_size_hold_every_example_once_with_less_padding_in_a_seeded_order(zoo32):
    examples = [example(s, 256, "neurons") for s in read_samples(str(zoo32 / "z/standard/shard-{000000..000001}.tar"))]
    everything = sorted((len(e.features), tuple(e.ids)) for e in examples)

    def batches(pool, seed=0):
        return list(by_size(batch_size=4, pool=pool, seed=seed)(iter(examples)))

    def real_share(batches):  # of the weight and program positions the model computes
        return sum(b["weight_mask"].sum() + b["program_mask"].sum() for b in batches) / sum(
            b["weight_mask"].numel() + b["program_mask"].numel() for b in batches)

    by_length, at_random = batches(pool=8), batches(pool=1)
    for made in (by_length, at_random):
        assert len(made) == 8 and sorted(row for b in made for row in _rows(b)) == everything
    # pool 1: the examples' own (shuffled upstream) order, four at a time
    assert [sorted(_rows(b)) for b in at_random] == [sorted((len(e.features), tuple(e.ids)) for e in examples[i : i + 4]) for i in range(0, 32, 4)]
    assert 1 - real_share(by_length) < 0.75 * (1 - real_share(at_random))  # a quarter less padding, at least
    # one pool here, sorted before cut: each batch is a stretch of the sorted sizes
    stretches = sorted(sorted(n + len(ids) for n, ids in _rows(b)) for b in by_length)
    assert [size for stretch in stretches for size in stretch] == sorted(n + len(ids) for n, ids in everything)
    assert [_rows(b) for b in batches(pool=8)] == [_rows(b) for b in by_length]  # a resumed run skips the same batches
    assert [_rows(b) for b in batches(pool=8, seed=1)] != [_rows(b) for b in by_length]


def test_later_epochs_take_the_examples_kept_from_the_first_up_to_the_cache_limit(zoo32):
    urls = str(zoo32 / "z/standard/shard-{000000..000001}.tar")

    def two_epochs(cache_mb):
        return list(itertools.islice(stream(urls, None, 256, shuffle_buffer=0, cache_mb=cache_mb), 64))

    kept, decoded = two_epochs(64), two_epochs(0)
    assert [e.key for e in kept] == [e.key for e in decoded] == [e.key for e in decoded[:32]] * 2
    assert all(again is first for first, again in zip(kept[:32], kept[32:]))  # not decoded again
    assert not any(again is first for first, again in zip(decoded[:32], decoded[32:]))
    for a, b in zip(kept, decoded):  # keeping changes nothing but the time
        assert a.ids == b.ids and (a.features == b.features).all()
    sizes = [e.features.nbytes for e in kept[:32]]
    assert sum(sizes) > 1 << 20  # so that 1 MiB keeps some examples and not others
    few = two_epochs(1)
    room, expected = 1 << 20, []
    for size in sizes:  # kept while they fit, in the order they come
        expected.append(size <= room)
        room -= size if size <= room else 0
    assert [b is a for a, b in zip(few[:32], few[32:])] == expected and 0 < sum(expected) < 32
