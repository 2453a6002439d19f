"""Progress of a long stage in a form that fits where it goes: a tqdm bar on a terminal, lines elsewhere.

Without a terminal (`kubectl logs`, CI, `make run > run.log`) a tqdm bar still redraws itself with
carriage returns, so a whole stage becomes one line of many kilobytes that no log viewer can page.
There a stage writes instead one timestamped line every `every_seconds` (or one JSON object, for log
collectors) and a summary line when it ends. The CLI sets the interval and the format once for the
process (`configure`); stages only say what they count.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import numbers
import sys
import time
from typing import Any, Callable, Mapping, TextIO

from tqdm import tqdm

FORMATS = ("text", "json")
#: No line is longer: the postfix is cut (text) or its last fields dropped (JSON) to fit.
MAX_LINE_CHARS = 300
#: Stage names are cut to this length, so that the fixed part of a line always fits.
MAX_DESC_CHARS = 80


@dataclasses.dataclass(frozen=True)
class Settings:
    every_seconds: float = 10.0
    log_format: str = "text"


_settings = Settings()


def configure(every_seconds: float, log_format: str) -> None:
    """Set how every later progress report of this process writes lines when it has no terminal."""
    global _settings
    if not every_seconds >= 0 or log_format not in FORMATS:
        raise ValueError(f"expected every_seconds >= 0 and a format in {FORMATS}, got {every_seconds!r}, {log_format!r}")
    _settings = Settings(every_seconds, log_format)


def progress_bar(
    total: float | None = None,
    *,
    desc: str,
    unit: str = "it",
    initial: float = 0,
    enabled: bool = True,
    stream: TextIO | None = None,
    every_seconds: float | None = None,
    log_format: str | None = None,
    clock: Callable[[], float] = time.time,
) -> tqdm | ProgressLines:
    """A tqdm bar if `stream` (default stderr, as tqdm's) is a terminal, else `ProgressLines`.

    Both take tqdm's `update`, `set_postfix`, `close`, `with` and a settable `total`; disabled,
    it is tqdm's silent bar. `every_seconds` and `log_format` default to `configure`'s settings;
    `clock` (seconds since the epoch, as tqdm's) is there so tests can move time themselves.
    """
    stream = sys.stderr if stream is None else stream
    if not enabled or _is_terminal(stream):
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, disable=not enabled)
    return ProgressLines(
        total,
        desc=desc,
        unit=unit,
        initial=initial,
        stream=stream,
        every_seconds=_settings.every_seconds if every_seconds is None else every_seconds,
        log_format=_settings.log_format if log_format is None else log_format,
        clock=clock,
    )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressLines:
    """tqdm's counting interface, written as a line per interval and a summary on `close`.

    A line is written by `update` once `every_seconds` have passed since the previous one, so a
    stage that calls `set_postfix` should call it before `update` for the line to carry its figures.
    Rates are averages since the start (tqdm's are smoothed): a line every few seconds should say
    how the stage goes, not how its last step went.
    """

    def __init__(
        self,
        total: float | None,
        *,
        desc: str,
        unit: str,
        initial: float,
        stream: TextIO,
        every_seconds: float,
        log_format: str,
        clock: Callable[[], float],
    ) -> None:
        if log_format not in FORMATS:
            raise ValueError(f"log_format must be one of {FORMATS}, got {log_format!r}")
        self.total = total
        self.n = initial
        self.desc = desc if len(desc) <= MAX_DESC_CHARS else desc[: MAX_DESC_CHARS - 1] + "…"
        self.unit = unit
        self._initial = initial
        self._stream = stream
        self._every = every_seconds
        self._format = log_format
        self._clock = clock
        self._started = self._last = clock()
        self._postfix: dict[str, Any] = {}
        self._closed = False

    def update(self, n: float = 1) -> None:
        self.n += n
        if self._clock() - self._last >= self._every:
            self._write("progress")

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """The figures the next lines carry; `refresh` is tqdm's and means nothing here."""
        self._postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write("done")

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            self.close()
        else:
            # A "done" line would claim a finish; the error that stopped the stage says what happened.
            self._closed = True

    def _write(self, event: str) -> None:
        now = self._clock()
        self._last = now
        elapsed = now - self._started
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else None
        eta = (self.total - self.n) / rate if self.total and rate else None
        stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = (self._json if self._format == "json" else self._text)(stamp, event, elapsed, rate, eta)
        self._stream.write(line + "\n")
        self._stream.flush()

    def _text(self, stamp: str, event: str, elapsed: float, rate: float | None, eta: float | None) -> str:
        speed = f"{_number(rate)} {self.unit}/s"
        if event == "done":
            parts = [f"{stamp} {self.desc} done: {_number(self.n)} {self._units(self.n)} in {_duration(elapsed)} ({speed})"]
        elif self.total:
            count = f"{_number(self.n)}/{_number(self.total)} {self._units(self.total)} ({100 * self.n / self.total:.0f}%)"
            parts = [f"{stamp} {self.desc}: {count}", speed, f"ETA {_duration(eta) if eta is not None else '?'}"]
        else:  # a total not known yet (distillation learns it shard by shard)
            parts = [f"{stamp} {self.desc}: {_number(self.n)} {self._units(self.n)}", speed]
        if self._postfix:
            # Numbers as tqdm shows them, so a log line and a bar show the same figures.
            parts.append(" ".join(f"{k}={tqdm.format_num(v) if isinstance(v, numbers.Number) else v}" for k, v in self._postfix.items()))
        line = " | ".join(parts)
        return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"

    def _units(self, count: float) -> str:
        """The unit, plural unless the number it follows is 1: "1 step", "1/3 steps"."""
        return self.unit if count == 1 else self.unit + "s"

    def _json(self, stamp: str, event: str, elapsed: float, rate: float | None, eta: float | None) -> str:
        fixed = {
            "time": stamp,
            "event": event,
            "stage": self.desc,
            "n": self.n,
            "total": self.total,
            "unit": self.unit,
            "rate": round(rate, 3) if rate is not None else None,
            "eta_s": round(eta, 1) if eta is not None else None,
            "elapsed_s": round(elapsed, 1),
        }
        extra = [(k, _json_value(v)) for k, v in self._postfix.items() if k not in fixed]
        while True:
            line = json.dumps({**fixed, **dict(extra)}, separators=(",", ":"))
            if len(line) <= MAX_LINE_CHARS or not extra:
                return line
            extra.pop()


def _number(value: float | None) -> str:
    """A count or a rate as a person reads it: whole numbers whole, others to 3 significant digits."""
    if value is None:
        return "?"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes == 0:
        return f"{secs}s"
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _json_value(value: Any) -> Any:
    """A postfix figure as a JSON number where it is one, also when the stage formatted it for the bar."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else str(value)
    text = str(value)
    for parse in (int, float):
        try:
            number = parse(text)
        except ValueError:
            continue
        return number if math.isfinite(number) else text
    return text
