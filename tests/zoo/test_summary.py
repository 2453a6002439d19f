"""The lines generate and distill print at the end (zoo.summary), in the same words."""

from __future__ import annotations

import collections

from inverse_tracr.distill.stage import Summary as DistillSummary
from inverse_tracr.zoo.generate import Summary as GenerateSummary


def test_both_stages_say_what_they_wrote_skipped_and_rejected_the_same_way():
    generated = GenerateSummary(shards_written=2, shards_skipped=1, programs=10, candidates=16, seconds=4.0, startup_seconds=2.0,
                                rejections=collections.Counter(constant_output=5, identity=1))
    assert generated.lines() == [
        "wrote 2 shard(s), skipped 1 finished; 10 verified programs from 16 candidates in 4.0 s "
        "(2.50 programs/s; 5.00/s after 2.0 s of worker start-up)",
        "rejected: constant_output 5 (83%), identity 1 (17%)",
    ]
    distilled = DistillSummary(kind="natural", shards_written=1, teachers=4, accepted=3, seconds=6.0, rejections=collections.Counter(gate=1))
    assert distilled.lines() == [
        "wrote 1 natural shard(s), skipped 0 finished; 3 of 4 models accepted (75%) in 6.0 s (2.00 s per accepted model)",
        "rejected: gate 1 (100%)",
    ]
    assert GenerateSummary(shards_skipped=3).lines() == ["all 3 shard(s) already finished: nothing to do"]
    assert DistillSummary(kind="compressed", shards_skipped=2).lines() == ["all 2 compressed shard(s) already finished: nothing to do"]
