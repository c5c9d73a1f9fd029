"""Every method's fast preset still gives the outputs it gave before the layout move (commit 25ba0ad).

The reference (tests/data/reference_outputs.json) holds summary statistics and 8x8x8 block means
of each method's restoration of a small noisy tubes phantom, 8 training steps, seed 0, one thread.
On the machine that made it the outputs are bit-identical (sha256, checked after each step of the
move); the tolerance of 1e-5 (intensities about 0..1) leaves room for another CPU's float kernels,
and a one-percent change of the output fails it (the last test).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore

REF = json.loads((Path(__file__).parent / "data" / "reference_outputs.json").read_text())
METHODS = sorted(k for k in REF if not k.startswith("_"))
TOL = 1e-5


def _summary(a: np.ndarray) -> dict:
    a = a.astype(np.float64)
    z, y, x = a.shape
    c = a[:z // 8 * 8, :y // 8 * 8, :x // 8 * 8].reshape(z // 8, 8, y // 8, 8, x // 8, 8).mean(axis=(1, 3, 5))
    return {"shape": list(a.shape), "mean": float(a.mean()), "std": float(a.std()),
            "p": [float(v) for v in np.percentile(a, [1, 50, 99])], "blocks": c.ravel().tolist()}


@pytest.fixture(scope="module")
def phantom():
    return make_phantom("tubes", (33, 48, 48), factor=4, seed=0, noise=True).degraded


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_method_output_unchanged(method, phantom, one_thread):
    got = _summary(np.asarray(restore(phantom, method, steps=8, seed=0, device="cpu").volume.data))
    ref = REF[method]
    assert got["shape"] == ref["shape"]
    np.testing.assert_allclose([got["mean"], got["std"], *got["p"]], [ref["mean"], ref["std"], *ref["p"]],
                               atol=TOL, rtol=0)
    np.testing.assert_allclose(got["blocks"], ref["blocks"], atol=TOL, rtol=0)


def test_the_reference_sees_a_change(phantom, one_thread):
    """A one-percent change of the output (what a changed normalisation does) fails the comparison."""
    got = _summary(1.01 * np.asarray(restore(phantom, "linear", device="cpu").volume.data))
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(got["blocks"], REF["linear"]["blocks"], atol=TOL, rtol=0)
