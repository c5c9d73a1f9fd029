"""Shared pytest fixtures. Keep fixtures small: the suite runs on 2 CPU cores."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

_SESSION: dict[str, int] = {}


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, so failures reproduce."""
    return np.random.default_rng(1234)


@pytest.fixture
def small_stack(rng: np.random.Generator) -> np.ndarray:
    """A small float32 ZYX stack (6, 16, 20) with values in [0, 1000)."""
    return (rng.random((6, 16, 20)) * 1000).astype(np.float32)


@pytest.fixture(autouse=True)
def _python_gc_restored_after_gui():
    """A test that leaves a main window open must not leave automatic garbage collection off for the
    rest of the suite (the window moves collection to the GUI thread: isoapp.gui.gcguard)."""
    yield
    import sys

    guard = sys.modules.get("isoapp.gui.gcguard")
    while guard is not None and guard._state["count"]:
        guard.release()


def pytest_sessionfinish(session, exitstatus) -> None:
    _SESSION["exitstatus"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """End the test process once pytest has reported, without the interpreter's finalisation.

    One pytest process holds a JVM (JPype: Bio-Formats and ImageJ tests), a QApplication, torch's
    thread pools and Dask's event loop all at once, which no user process does. Tearing all of them
    down at interpreter exit is not deterministic: CI once got SIGSEGV after "637 passed", after
    every result had been reported (not reproduced in a local run of the same suite). So Java is
    stopped here while the interpreter is whole, and the process then exits with pytest's status.
    The exit paths users meet are tested in their own processes (the CLI tests, and the GUI hand-off
    to Fiji in ``tests/gui/test_gui_fiji.py``), whose exit codes those tests check.
    ``ISOAPP_TEST_FINALIZE=1`` keeps the normal exit (to study it with ``PYTHONFAULTHANDLER=1``).
    """
    if "exitstatus" not in _SESSION or os.environ.get("ISOAPP_TEST_FINALIZE") == "1":
        return
    jvm = sys.modules.get("fiji_bridge.jvm")
    if jvm is not None:
        try:
            jvm.shutdown()
        except Exception as exc:  # the status is what matters now
            print(f"conftest: stopping Java failed: {exc}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_SESSION["exitstatus"])
