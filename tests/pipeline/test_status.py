"""`inverse-tracr status`: a zoo's progress, read from a real local store."""

from __future__ import annotations

import subprocess
import sys

from conftest import cli_env


def test_status_reads_a_real_local_zoo(small_zoo):
    result = subprocess.run([sys.executable, "-m", "inverse_tracr.cli", "status", "--store", str(small_zoo), "--zoo", "small"],
                            env=cli_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "standard: 2 shards, 12 programs" in result.stdout and "programs of 3-6 lines" in result.stdout
    as_json = subprocess.run([sys.executable, "-m", "inverse_tracr.cli", "status", "--store", str(small_zoo), "--zoo", "small", "--json"],
                             env=cli_env(), capture_output=True, text=True, timeout=120)
    import json

    assert json.loads(as_json.stdout)["kinds"]["standard"]["programs"] == 12
