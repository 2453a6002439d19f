"""The zoo's recorded config: a changed config, or a zoo of an older format, is refused."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL

from inverse_tracr.zoo.config import ZooConfig
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.manifest import ZooConfigError


def test_a_changed_config_is_refused(small_zoo):
    with pytest.raises(ZooConfigError, match="max_ops=6 \\(asked 7\\)"):
        generate(str(small_zoo), "small", ZooConfig(shard_size=6, min_ops=3, max_ops=7, seed=7), programs=12, progress=False)


def test_a_zoo_of_an_older_format_is_refused_with_how_to_regenerate(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old/zoo.json").write_text(json.dumps({"format": "inverse-tracr/zoo/1", "config": {}}))
    with pytest.raises(ZooConfigError, match="format 'inverse-tracr/zoo/1'.*generate it again"):
        generate(str(tmp_path), "old", SMALL, programs=6, progress=False)
