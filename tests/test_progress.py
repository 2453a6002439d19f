"""Progress output where it goes: a bar on a terminal, short timestamped lines (text or JSON) in a log."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import pytest
from conftest import cli_env

from inverse_tracr import cli, progress
from inverse_tracr.progress import MAX_LINE_CHARS, progress_bar

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class FakeClock:
    """Seconds since the epoch that move only when the test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def default_settings():
    yield
    progress.configure(10.0, "text")  # the CLI's defaults: later tests in this process expect them


def _train_like(stream: io.StringIO, clock: FakeClock, steps: int = 600, seconds_per_step: float = 0.25, **options) -> None:
    """The training loop's calls: figures, then the count; 4 steps per second."""
    with progress_bar(total=steps, desc="train t", unit="step", stream=stream, clock=clock, **options) as bar:
        for step in range(1, steps + 1):
            clock.now += seconds_per_step
            bar.set_postfix(loss=f"{1 / step:.3f}", acc=f"{step / steps:.3f}", sps="128", refresh=False)
            bar.update(1)


def test_without_a_terminal_one_plain_line_per_interval_and_a_summary():
    out, clock = io.StringIO(), FakeClock()
    _train_like(out, clock, every_seconds=10)
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert len(lines) == 150 // 10 + 1  # a line per 10 s of the 150 s, and the summary
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert lines[0] == "2027-01-15T08:00:10Z train t: 40/600 steps (7%) | 4 step/s | ETA 2m20s | loss=0.025 acc=0.067 sps=128"
    assert lines[1] == "2027-01-15T08:00:20Z train t: 80/600 steps (13%) | 4 step/s | ETA 2m10s | loss=0.013 acc=0.133 sps=128"
    assert lines[-2] == "2027-01-15T08:02:30Z train t: 600/600 steps (100%) | 4 step/s | ETA 0.0s | loss=0.002 acc=1.000 sps=128"
    assert lines[-1] == "2027-01-15T08:02:30Z train t done: 600 steps in 2m30s (4 step/s) | loss=0.002 acc=1.000 sps=128"


def test_the_process_settings_apply_and_a_resumed_count_rates_only_its_own_steps():
    progress.configure(30.0, "text")
    out, clock = io.StringIO(), FakeClock()
    with progress_bar(total=100, initial=40, desc="train t", unit="step", stream=out, clock=clock) as bar:
        for _ in range(60):
            clock.now += 1.0
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 60 // 30 + 1
    assert lines[0].endswith("train t: 70/100 steps (70%) | 1 step/s | ETA 30s")
    assert lines[-1].endswith("train t done: 100 steps in 1m00s (1 step/s)")


def test_a_total_learnt_on_the_way_and_numbers_shown_as_tqdm_shows_them():
    out, clock = io.StringIO(), FakeClock()
    with progress_bar(desc="distill compressed", unit="model", stream=out, clock=clock, every_seconds=0) as bar:
        clock.now += 2
        bar.update(1)
        bar.total = (bar.total or 0) + 4  # as distillation does when it has read a shard
        bar.set_postfix({"loss": 0.0123456, "seen": 1500000})
        clock.now += 2
        bar.update(1)
    assert out.getvalue().splitlines() == [
        "2027-01-15T08:00:02Z distill compressed: 1 model | 0.5 model/s",
        "2027-01-15T08:00:04Z distill compressed: 2/4 models (50%) | 0.5 model/s | ETA 4.0s | loss=0.0123 seen=1.5e+6",
        "2027-01-15T08:00:04Z distill compressed done: 2 models in 4.0s (0.5 model/s) | loss=0.0123 seen=1.5e+6",
    ]


def test_long_figures_are_cut_to_the_line_limit_in_both_formats():
    for log_format in ("text", "json"):
        out, clock = io.StringIO(), FakeClock()
        with progress_bar(total=2, desc="x" * 500, unit="step", stream=out, clock=clock, every_seconds=0, log_format=log_format) as bar:
            bar.set_postfix(loss="0.5", note="y" * 1000)
            clock.now += 1
            bar.update(1)
        lines = out.getvalue().splitlines()
        assert len(lines) == 2 and all(len(line) <= MAX_LINE_CHARS for line in lines), lines
        if log_format == "json":
            first = json.loads(lines[0])
            assert first["loss"] == 0.5 and "note" not in first and first["stage"].startswith("xxx")
        else:
            assert lines[0].endswith("…") and "loss=0.5 note=yyy" in lines[0]


def test_json_lines_carry_the_same_figures_as_numbers():
    out, clock = io.StringIO(), FakeClock()
    _train_like(out, clock, steps=40, every_seconds=5, log_format="json")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["progress", "progress", "done"]
    first = records[0]
    assert first == {
        "time": "2027-01-15T08:00:05Z", "event": "progress", "stage": "train t", "n": 20, "total": 40, "unit": "step",
        "rate": 4.0, "eta_s": 5.0, "elapsed_s": 5.0, "loss": 0.05, "acc": 0.5, "sps": 128,
    }
    done = records[-1]
    assert (done["n"], done["total"], done["rate"], done["elapsed_s"], done["loss"], done["acc"]) == (40, 40, 4.0, 10.0, 0.025, 1.0)


def test_nothing_is_written_when_disabled_or_when_the_stage_fails():
    out = io.StringIO()
    with progress_bar(total=3, desc="quiet", unit="step", stream=out, enabled=False, every_seconds=0) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    clock = FakeClock()
    with pytest.raises(RuntimeError, match="stage failed"):
        with progress_bar(total=3, desc="fails", unit="step", stream=out, clock=clock, every_seconds=100) as bar:
            bar.update(1)
            raise RuntimeError("stage failed")
    assert out.getvalue() == ""  # no "done" for a stage that did not finish


SCRIPT = """
from inverse_tracr.progress import progress_bar
with progress_bar(total=3, desc="demo", unit="step", every_seconds=0) as bar:
    for _ in range(3):
        bar.set_postfix(loss="0.5", refresh=False)
        bar.update(1)
"""


def _stderr_on_a_terminal() -> str:
    parent, child = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, where tqdm draws nothing; a real one has a size.
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], env=cli_env(), stderr=child, stdout=subprocess.DEVNULL)
    os.close(child)
    chunks = []
    try:
        while select.select([parent], [], [], 60)[0]:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # EIO: the last writer has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(parent)
        process.wait(timeout=60)
    assert process.returncode == 0
    return b"".join(chunks).decode()


def test_a_terminal_gets_the_tqdm_bar_and_a_pipe_gets_lines():
    terminal = _stderr_on_a_terminal()
    assert "\r" in terminal and "demo: 100%" in terminal and "3/3" in terminal and "loss=0.5" in terminal

    piped = subprocess.run([sys.executable, "-c", SCRIPT], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    lines = piped.stderr.splitlines()
    assert "\r" not in piped.stderr and len(lines) == 4
    assert " demo: 1/3 steps (33%) | " in lines[0] and lines[0].endswith(" | loss=0.5")
    assert " demo: 3/3 steps (100%) | " in lines[2]
    assert " demo done: 3 steps in " in lines[3]


def test_generate_through_the_cli_logs_plain_lines_when_piped(tmp_path):
    command = [sys.executable, "-m", "inverse_tracr.cli", "--log-every-seconds", "0", "generate", "--store", str(tmp_path),
               "--zoo", "z", "--programs", "3", "--shard-size", "3", "--min-ops", "3", "--max-ops", "5", "--seed", "3", "--workers", "1"]
    result = subprocess.run(command, env=cli_env(INVERSE_TRACR_LOG_FORMAT="text"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "wrote 1 shard(s)" in result.stdout
    lines = [line for line in result.stderr.splitlines() if " generate z" in line]
    stamp, duration, rate = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r"[\d.]+s", r"[\d.]+ program/s"
    assert len(lines) == 4, result.stderr
    for line, (n, percent) in zip(lines, [(1, 33), (2, 67), (3, 100)]):
        assert re.fullmatch(rf"{stamp} generate z: {n}/3 programs \({percent}%\) \| {rate} \| ETA {duration}", line), line
    assert re.fullmatch(rf"{stamp} generate z done: 3 programs in {duration} \({rate}\)", lines[-1]), lines[-1]


def _settings(args: list[str], monkeypatch, environment: dict[str, str]) -> list:
    for name in ("INVERSE_TRACR_LOG_EVERY_SECONDS", "INVERSE_TRACR_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    parser = cli.build_parser()
    return cli._log_settings(parser, parser.parse_args(args))


@pytest.mark.parametrize("args, environment, expected", [
    (["--log-format", "json", "run"], {}, [10.0, "json"]),
    (["status", "--log-every-seconds", "2.5"], {"INVERSE_TRACR_LOG_FORMAT": "json"}, [2.5, "json"]),
    (["--log-every-seconds", "1", "generate", "--log-format", "text"], {"INVERSE_TRACR_LOG_EVERY_SECONDS": "7"}, [1.0, "text"]),
    (["train"], {"INVERSE_TRACR_LOG_EVERY_SECONDS": "0", "INVERSE_TRACR_LOG_FORMAT": ""}, [0.0, "text"]),
])
def test_settings_come_from_options_before_or_after_the_command_else_the_environment(monkeypatch, args, environment, expected):
    assert _settings(args, monkeypatch, environment) == expected


@pytest.mark.parametrize("args, environment, message", [
    (["--log-every-seconds", "-1", "status"], {}, "argument --log-every-seconds: expected a number of seconds, 0 or more, got '-1'"),
    (["evaluate", "--log-every-seconds", "soon"], {}, "argument --log-every-seconds: expected a number of seconds, got 'soon'"),
    (["run", "--log-format", "xml"], {}, "argument --log-format: expected one of text, json, got 'xml'"),
    (["run"], {"INVERSE_TRACR_LOG_FORMAT": "xml"}, "INVERSE_TRACR_LOG_FORMAT: expected one of text, json, got 'xml'"),
    (["distill"], {"INVERSE_TRACR_LOG_EVERY_SECONDS": "nan"}, "INVERSE_TRACR_LOG_EVERY_SECONDS: expected a number of seconds, 0 or more"),
])
def test_bad_settings_are_a_usage_error_not_a_traceback(monkeypatch, capsys, args, environment, message):
    with pytest.raises(SystemExit) as exit:
        _settings(args, monkeypatch, environment)
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("usage:") and "Traceback" not in error


def test_bad_settings_through_the_command_line():
    result = subprocess.run([sys.executable, "-m", "inverse_tracr.cli", "status"], env=cli_env(INVERSE_TRACR_LOG_EVERY_SECONDS="-3"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == "inverse-tracr: error: INVERSE_TRACR_LOG_EVERY_SECONDS: expected a number of seconds, 0 or more, got '-3'"


@pytest.mark.parametrize("sets, expected", [((), [30.0, "text"]), (("logs.everySeconds=5", "logs.format=json"), [5.0, "json"])])
def test_every_pod_of_the_chart_logs_progress_as_its_values_say(monkeypatch, sets, expected):
    from k8s_tools import pod_containers, render

    stages = [(where, c) for where, c, init in pod_containers(render(sets=sets)) if not init]
    assert len(stages) == 5
    for where, container in stages:
        environment = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("INVERSE_TRACR_LOG_")}
        assert not any("--log-" in arg for arg in [*container.get("command", []), *container.get("args", [])]), where
        assert _settings(["status"], monkeypatch, environment) == expected, where


def test_the_chart_refuses_a_log_format_the_cli_does_not_know():
    from k8s_tools import run_helm, template_args

    result = run_helm(*template_args(sets=("logs.format=xml",)))
    assert result.returncode != 0 and "at '/logs/format': value must be one of 'text', 'json'" in result.stderr
