"""Bounded reads, sampled statistics, the training region, and the train/save/load front door."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from test_blockwise import _stack, _write

from isoapp.cli import main
from isoapp.data.io import read_volume
from isoapp.data.io.lazy import bounded, fit_normalizer, training_region
from isoapp.data.normalize import Normalizer
from isoapp.run.restorer import Restorer


def test_bounded_memmap_views_keep_layout(tmp_path):
    arr = (np.arange(40 * 3 * 24 * 20) % 65000).astype(np.uint16).reshape(40, 3, 24, 20)  # ZCYX
    p = tmp_path / "zc.tif"
    tifffile.imwrite(p, arr, imagej=True, metadata={"axes": "ZCYX"})
    vol = read_volume(p, lazy=True)  # CZYX view of a ZCYX memory map: not contiguous
    assert isinstance(vol.data, np.memmap) and vol.axes == "CZYX"
    for c in range(3):
        view = vol.channel(c).data
        lazy = bounded(view)
        assert not isinstance(lazy, np.memmap)
        np.testing.assert_array_equal(lazy[2:37, 5:9, 1:20], np.asarray(view)[2:37, 5:9, 1:20])
        np.testing.assert_array_equal(lazy[7], np.asarray(view)[7])


def test_training_region_finds_the_signal_and_respects_the_budget():
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 5, (12, 256, 320)).astype(np.float32)
    vol[:, 180:230, 20:70] += 500  # the only structure, in one corner
    box = training_region(vol, 12 * 96 * 96 * 4)
    assert box[0] == slice(0, 12)
    sub = vol[box]
    assert sub.nbytes <= 12 * 96 * 96 * 4 and sub.shape[1] >= 64
    assert (sub > 400).sum() == (vol > 400).sum()  # the whole blob is inside
    assert training_region(vol, vol.nbytes) == (slice(0, 12), slice(0, 256), slice(0, 320))


def test_sampled_normaliser_close_to_exact(tmp_path):
    arr = _stack((40, 256, 256))
    p = _write(tmp_path / "s.tif", arr)
    data = read_volume(p, lazy=True).data
    exact = Normalizer.fit(arr.astype(np.float32))
    small = fit_normalizer(bounded(data), budget_bytes=2**20 * 2)  # 4 % of the stack
    span = exact.hi - exact.lo
    assert abs(small.lo - exact.lo) < 0.05 * span and abs(small.hi - exact.hi) < 0.05 * span
    assert fit_normalizer(arr) == exact  # in memory: the exact percentiles, as before


def test_train_command_then_restore_with_the_model(tmp_path, capsys):
    src = _write(tmp_path / "in.tif", _stack((13, 64, 64)))
    rc = main(["train", str(src), "--save-model", str(tmp_path / "m"), "--method", "isonet", "--steps", "3",
               "--device", "cpu", "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "isonet" and info["peak_rss_mb"] > 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert set(cfg["normalizer"]) == {"lo", "hi"} and cfg["degradation"]["blur_source"] == "estimated"
    r = Restorer.load(tmp_path / "m", device="cpu")
    vol = read_volume(src)
    a = r.predict(vol).data
    assert main(["restore", str(src), "-o", str(tmp_path / "o.tif"), "--model", str(tmp_path / "m")]) == 0
    np.testing.assert_allclose(read_volume(tmp_path / "o.tif").data, a, rtol=0, atol=1e-3)
    assert main(["train", str(src), "--save-model", str(tmp_path / "m2"), "--method", "linear"]) == 2
    assert "does not train" in capsys.readouterr().err
    # the default run made both self-checks; --check lateral skips the axial one's second training
    assert "psnr_gain_db" in (cfg.get("axial") or {}) and cfg.get("heldout")
    assert main(["train", str(src), "--save-model", str(tmp_path / "m3"), "--method", "isonet", "--steps", "3",
                 "--device", "cpu", "--check", "lateral", "-q"]) == 0
    cfg3 = json.loads((tmp_path / "m3" / "config.json").read_text())
    assert cfg3.get("axial") is None and cfg3.get("heldout")


@pytest.mark.parametrize("budget", [2**30, 64 * 64 * 13 * 4 // 3])
def test_fit_on_region_keeps_the_model_usable(tmp_path, budget):
    vol = read_volume(_write(tmp_path / "in.tif", _stack((13, 64, 64))), lazy=True)
    r = Restorer("isonet", steps=2, device="cpu", train_budget_bytes=budget).fit(vol)
    out = r.predict(vol.load())
    assert out.shape == (49, 64, 64) and np.isfinite(out.data).all()
