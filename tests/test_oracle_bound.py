"""The supervised bound of the quality suite (benchmarks/oracle_bound.py) scores what it claims to.

Its figures back a statement in docs/QUALITY.md (which targets a plane-wise network cannot reach),
so its geometry is checked here: an untrained residual U-Net (the identity) must give back linear
interpolation exactly, so that the bound's gain is the training's and not the plane fusion's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ob():
    sys.path.insert(0, str(_DIR))
    try:
        spec = importlib.util.spec_from_file_location("oracle_bound", _DIR / "oracle_bound.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(_DIR))


def test_pairs_are_the_suites_linear_interpolation_and_reference(ob):
    lin, ref = ob.prepared("filaments", "gauss", 20.0, 4.0, (7, 32, 32), seed=0)
    assert lin.shape == ref.shape == (25, 32, 32)
    case = ob.ip.make_case("filaments", "gauss", 20.0, 4.0, shape=(7, 32, 32), seed=0)
    # the acquired planes sit at every 4th row of the input, up to the normaliser's affine map
    a = case.acquired.astype(np.float64).ravel()
    b = lin[::4].astype(np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.9999


def test_an_untrained_net_gives_back_linear_interpolation(ob):
    from isoapp.methods.nets import UNet

    rng = np.random.default_rng(0)
    vol = rng.random((25, 30, 34)).astype(np.float32)  # sizes not multiples of the net's divisor
    out = ob.restore(UNet(2, depth=2, n_filters=4, residual=True), vol)
    np.testing.assert_allclose(out, vol, atol=1e-6)


def test_main_writes_its_table_and_refuses_a_test_seed_it_trained_on(ob, tmp_path, capsys):
    assert ob.main(["--cases", "nuclei-confocal-20", "--size", "32", "--planes", "7", "--steps", "2",
                    "--batch", "2", "--patch", "16", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "oracle_bound.json").read_text())["rows"]
    assert [r["case"] for r in rows] == ["nuclei-confocal-20ph-F4"]
    assert np.isfinite(rows[0]["bound_gain_db"])
    assert "nuclei-confocal-20ph-F4" in (tmp_path / "oracle_bound.md").read_text()
    with pytest.raises(SystemExit) as err:
        ob.main(["--train-seeds", "0,1", "--test-seed", "0", "--out", str(tmp_path)])
    assert err.value.code == 2
    assert "must not be one of --train-seeds" in capsys.readouterr().err
