"""Training data: a loader worker prints real errors, not a handover the trainer abandoned."""

from __future__ import annotations

import sys

from inverse_tracr.meta.data import quiet_handover


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
