"""Meta-model presets: their learning rates, as the CLI lists them and as training takes them."""

from __future__ import annotations

import subprocess
import sys

from inverse_tracr.meta.config import MetaConfig, TrainConfig
from inverse_tracr.meta.presets import PRESETS
from inverse_tracr.pipeline.run import load_values, plan


def test_the_cli_lists_presets_and_their_learning_rates_without_importing_torch():
    code = ("import sys, inverse_tracr.cli as cli\n"
            "try:\n    cli.build_parser().parse_args(['train', '--help'])\n"
            "except SystemExit:\n    print(sorted({'torch', 'jax'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    help_text, imported = result.stdout.rstrip().rsplit("\n", 1)
    assert imported == "[]"  # --help stays fast
    for name, preset in PRESETS.items():
        assert f"{name} {preset.lr:g}" in " ".join(help_text.split())


def test_the_learning_rate_is_the_preset_s_unless_given():
    assert TrainConfig(store="s", zoo="z", model=MetaConfig(preset="small")).lr == PRESETS["small"].lr == 2e-3
    assert TrainConfig(store="s", zoo="z", model=MetaConfig(preset="small"), lr=1e-4).lr == 1e-4
    assert [c.lr for c in plan(load_values(None, "demo")).train] == [PRESETS["tiny"].lr]
