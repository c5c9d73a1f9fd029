"""Shared pytest fixtures. Keep fixtures small: the suite runs on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import pytest


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
