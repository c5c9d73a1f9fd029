"""The held-out check of the 3D methods (a slab no training crop covers) and of Richardson–Lucy.

The exclusion is proven end to end: the held-out planes of the stack a method trains on are set to
NaN, and its weights must stay finite (any crop that read them would make the loss NaN); the same
run without the exclusion must not (so the test can fail). The check's sign against the true gain
and the mutation guard (Self-Vision's blur forced to 0) are in ``test_quality_indep.py``, on the
independent noisy case, next to the true gains they are compared with.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from isoapp.core.errors import ConfigError, InputError
from isoapp.data.normalize import normalize
from isoapp.methods.base import build_config, get_method
from isoapp.physics.degradation import Degradation
from isoapp.physics.forward import upsample
from isoapp.quality.heldout import check_slab, choose_heldout, interpolated_rows, withheld
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore
from isoapp.training.context import RunContext
from isoapp.training.sampler import PatchSampler

DEG = Degradation(factor=4.0, axial_sigma_px=2.0, noise_gain=2e-3, noise_offset=1e-4)
SV_TRAIN = {"batch_size": 2, "patch_size": 16, "preview_every": 0}
OT_TINY = {"n_filters": 4, "depth": 1, "blur_channels": 4, "disc_filters": 4, "disc_layers": 2, "n_projections": 2,
           "max_projection_depth": 4, "tile": 48, "overlap": 8}
OT_TRAIN = {"patch_size": 16, "preview_every": 0}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tubes():
    return make_phantom("tubes", (97, 48, 48), factor=4, seed=0, noise={"photons": 200.0, "read_noise": 1.0})


def _method(name: str, params: dict, train: dict, steps: int = 3):
    cfg = build_config(name, factor=4.0, voxel_size=(0.4, 0.1, 0.1), steps=steps, params=params, train=train,
                       degradation=DEG.model_dump())
    cls = get_method(name)
    return cls(cfg, psf=DEG.psf() if cls.uses_psf else None, degradation=DEG)


# ---------------------------------------------------------------------------- choosing and excluding
def test_a_slab_leaves_a_training_run_and_sits_where_the_signal_is():
    h = choose_heldout(17, slab=10)
    assert h == list(range(h[0], h[0] + 3)) and max(h[0], 17 - h[-1] - 1) >= 10
    signal = np.zeros(17)
    signal[12:15] = 1.0
    assert choose_heldout(17, slab=10, signal=signal) == [12, 13, 14]
    assert choose_heldout(17, slab=15) == []  # no room: no check rather than a check on trained planes
    assert choose_heldout(60, slab=10) == list(range(27, 33))  # 6 planes, central without a signal
    check_slab(h, "selfvision")
    with pytest.raises(ConfigError, match="contiguous slab"):
        check_slab(choose_heldout(49), "selfvision")


@pytest.mark.parametrize("factor", [4.0, 2.5])
def test_interpolated_rows_are_exactly_the_rows_that_read_the_planes(factor):
    vol = np.ones((12, 2, 2), np.float32)
    held = [5, 6, 7]
    vol[held] = np.nan
    up = upsample(vol, factor, axis=0, order=1)
    reads = np.flatnonzero(np.isnan(up).any(axis=(1, 2)))
    np.testing.assert_array_equal(interpolated_rows(held, factor, len(up)), reads)


def test_the_sampler_never_covers_excluded_planes_and_uses_everything_else():
    rng = np.random.default_rng(0)
    vol = rng.random((20, 16, 16)).astype(np.float32)
    s = PatchSampler(vol, (5, 8, 8), rng, foreground_fraction=0.5, exclude=[9, 10])
    starts = {s.corner()[0] for _ in range(600)}
    assert starts == set(range(0, 5)) | set(range(11, 16))  # crops of 5 planes beside planes 9-10
    planes = PatchSampler(vol, (8, 8), rng, exclude=[3, 4])
    assert {planes.corner()[0] for _ in range(300)} == set(range(20)) - {3, 4}
    with pytest.raises(InputError, match="held-out planes 9-9"):
        PatchSampler(vol, (12, 8, 8), rng, exclude=[9])


def test_a_stack_too_thin_for_a_slab_gets_no_check_and_says_so(caplog):
    sv = _method("selfvision", {}, {"patch_size": 32})
    with caplog.at_level(logging.WARNING):
        assert sv.heldout_planes(np.zeros((12, 64, 64), np.float32)) == ()
    assert "no held-out check" in caplog.text
    assert _method("selfvision", {"axes": "zyx"}, {}).heldout_planes(np.zeros((40, 64, 64), np.float32)) == ()
    with pytest.raises(ConfigError, match="auto"):  # spread planes (auto's) are refused before training
        sv.fit(np.zeros((49, 64, 64), np.float32), RunContext(device="cpu", heldout=tuple(choose_heldout(49))))


def test_withheld_planes_are_interpolated_from_the_kept_ones_and_the_input_is_untouched():
    vol = np.arange(8, dtype=np.float32)[:, None, None] ** 2 * np.ones((1, 2, 3), np.float32)
    before = vol.copy()
    out = withheld(vol, [3, 4])  # adjacent planes: between kept planes 2 and 5
    np.testing.assert_array_equal(vol, before)
    np.testing.assert_allclose(out[:, 0, 0], [0, 1, 4, 4 + (25 - 4) / 3, 4 + 2 * (25 - 4) / 3, 25, 36, 49])
    assert withheld(vol, ()) is vol


@pytest.mark.slow
@pytest.mark.parametrize("name, params, train", [
    ("selfvision", {}, SV_TRAIN),
    ("otcyclegan", OT_TINY, OT_TRAIN),
    ("isonet", {}, {"batch_size": 4, "patch_size": 16, "preview_every": 0}),
    # Self-Net also learns from the stack's axial views (its unpaired domain B)
    ("selfnet", {}, {"batch_size": 2, "patch_size": 32, "preview_every": 0}),
])
def test_training_never_reads_the_heldout_planes(tubes, name, params, train):
    x = normalize(tubes.degraded.data)[0]
    m = _method(name, params, train)
    held = m.heldout_planes(x)
    assert len(held) >= 2 and (not m.heldout_slab or list(held) == list(range(held[0], held[-1] + 1)))
    poisoned = x.copy()
    poisoned[list(held)] = np.nan
    m.fit(poisoned, RunContext(device="cpu", seed=0, heldout=held))
    assert all(torch.isfinite(p).all() for net in m.nets.values() for p in net.parameters()), name
    if m.heldout_slab:  # the poison shows when nothing is held out: the test can fail
        leaky = _method(name, params, train, steps=12)
        leaky.fit(poisoned, RunContext(device="cpu", seed=0))
        assert not all(torch.isfinite(p).all() for net in leaky.nets.values() for p in net.parameters())


# ---------------------------------------------------------------------------- the check
def test_rl_restores_single_planes_as_its_3d_path_restores_the_stack():
    """With a z-only PSF (the estimated model) RL acts on each z column alone: planes and stack agree."""
    rl = _method("rl", {"iterations": 10}, {})
    vol = normalize(make_phantom("beads", (13, 24, 20), factor=4, seed=1).degraded.data)[0]
    ctx = RunContext(device="cpu")
    planes = rl.restore_sampled(np.ascontiguousarray(vol.transpose(1, 0, 2)), ctx)
    np.testing.assert_allclose(planes, rl.predict(vol, ctx).transpose(1, 0, 2), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name, kw", [
    ("selfvision", {"steps": 20, "train": SV_TRAIN}),
    ("otcyclegan", {"steps": 3, "params": OT_TINY, "train": OT_TRAIN}),
    ("rl", {}),
])
def test_the_check_is_reported_and_saved_with_the_model(tubes, tmp_path, name, kw):
    r = restore(tubes.degraded, name, device="cpu", save_model=tmp_path / name, **kw)
    ho = r.info["heldout"]
    assert isinstance(ho, dict) and np.isfinite(ho["psnr_gain_db"]) and np.isfinite(ho["ssim_gain"])
    assert ho["slab"] is (name != "rl") and ho["n_planes"] >= (3 if ho["slab"] else 2)
    assert r.method.config.heldout == ho
    again = restore(tubes.degraded, device="cpu", model_dir=tmp_path / name)
    assert again.info["heldout"] == ho
