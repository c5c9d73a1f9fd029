"""Self-Vision: real tiny trainings through restore() (grid, save/load, cancel/resume, quality).

Torch runs on one thread here: on the shared 2-core CI box, two OpenMP threads made each step
about 40x slower under load (measured), and one thread uses less of the shared CPU anyway.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoapp.core.errors import Cancelled, InputError
from isoapp.core.volume import Volume
from isoapp.methods import build_config, get_method
from isoapp.methods.nets.selfvision import SelfVisionNet, linear_upsample, pixel_shuffle_3d
from isoapp.methods.selfvision import back_project, degrade_along
from isoapp.physics.degradation import estimate_axial_sigma, estimate_noise
from isoapp.physics.forward import output_length, upsample
from isoapp.quality.metrics import compute_metrics
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore
from isoapp.training.tiling import receptive_field

pytestmark = pytest.mark.slow

TRAIN = {"batch_size": 4, "patch_size": 16, "lr": 3e-3, "checkpoint_every": 5, "val_every": 20, "preview_every": 0}
STEPS = 60


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tubes():
    return make_phantom("tubes", (25, 64, 64), factor=4, seed=0)


@pytest.fixture(scope="module")
def trained(tubes, tmp_path_factory):
    """One uninterrupted run (no back-projection: the network alone must do the work)."""
    d = tmp_path_factory.mktemp("sv_model")
    r = restore(tubes.degraded, "selfvision", steps=STEPS, device="cpu", seed=3, train=TRAIN,
                params={"back_projection_iters": 0}, save_model=d)
    return r, d


# ---------------------------------------------------------------------------- network
def test_pixel_shuffle_and_linear_upsample_follow_the_grid():
    x = torch.arange(4.0).reshape(1, 1, 4, 1, 1)
    y = linear_upsample(x, 4, 2).flatten()
    assert torch.allclose(y[:13], torch.arange(13.0) / 4)  # output[r*i + k] at position i + k/r
    assert torch.all(y[12:] == 3)  # edge replicated past the last plane
    c = torch.arange(8.0).reshape(1, 8, 1, 1, 1)  # channel (k0*2 + k1)*2 + k2 -> voxel (k0, k1, k2)
    s = pixel_shuffle_3d(c, (2, 2, 2))[0, 0]
    assert s[1, 0, 1] == 5 and s[0, 1, 1] == 3 and s[1, 1, 0] == 6


@pytest.mark.parametrize("axes", ["z", "zyx"])
def test_every_preset_stays_under_50k_parameters_and_halo_covers_receptive_field(axes):
    cls = get_method("selfvision")
    for preset in ("fast", "balanced", "quality"):
        for up in ("subpixel", "nearest_conv"):
            cfg = build_config("selfvision", preset=preset, factor=4.0, voxel_size=(0.4, 0.1, 0.1),
                               params={"axes": axes, "upsampler": up})
            m = cls(cfg)
            assert 1000 < m.parameter_count() < 50_000, (preset, up, m.parameter_count())
    net = SelfVisionNet((3, 1, 1) if axes == "z" else (2, 2, 2), n_middle=2)
    assert receptive_field(net, 3, size=32) <= net.halo


# ---------------------------------------------------------------------------- degradation model
def test_axial_blur_estimate_and_back_projection():
    ph = make_phantom("tubes", (41, 96, 96), factor=4, seed=1)
    x = ph.degraded.data / ph.degraded.data.max()
    true = np.sqrt(ph.params["sigma_z"] ** 2 - ph.params["sigma_iso"] ** 2)
    s = estimate_axial_sigma(x, 4.0)
    assert abs(s - true) < 0.15 * true, (s, true)
    y0 = upsample(x, 4.0, axis=0, order=1)
    gain, offset = estimate_noise(x)
    noise = float(np.sqrt(max(np.mean(gain * np.clip(x, 0, None) + offset), 0.0)))
    y, done = back_project(y0, x, 4.0, s, (0,), 10, noise=noise)
    assert y.shape == y0.shape and done >= 1
    r0 = np.abs(x - degrade_along(y0, 4.0, s, (0,), x.shape)).mean()
    r1 = np.abs(x - degrade_along(y, 4.0, s, (0,), x.shape)).mean()
    assert r1 < 0.5 * r0
    ref = ph.gt_iso.data / ph.degraded.data.max()
    assert compute_metrics(ref, y)["psnr"] > compute_metrics(ref, y0)["psnr"] + 1.0


# ---------------------------------------------------------------------------- restore()
def test_quality_beats_linear_interpolation(tubes, trained):
    r, _ = trained
    ref = tubes.gt_iso.data
    lin = restore(tubes.degraded, "linear").volume.data
    p_lin = compute_metrics(ref, lin)["psnr"]
    p_sv = compute_metrics(ref, r.volume.data)["psnr"]
    assert p_sv > p_lin + 1.0, (p_sv, p_lin)
    rep = r.method.report()
    assert rep["val_loss_final"] < 0.85 * rep["val_loss_interp"]


def test_grid_and_calibration_z_mode_non_integer_factor():
    ph = make_phantom("beads", (21, 48, 48), factor=2.5, seed=2)
    r = restore(ph.degraded, "selfvision", steps=3, device="cpu", train=TRAIN,
                params={"self_ensemble": True, "ensemble_size": 4})
    nz = ph.degraded.shape[0]
    assert r.volume.shape == (output_length(nz, 2.5), 48, 48)
    assert np.allclose(r.volume.voxel_size, (0.1, 0.1, 0.1))
    assert np.isfinite(r.volume.data).all()


def test_zyx_mode_grows_every_axis():
    iso = make_phantom("tubes", (48, 48, 48), factor=1.0, seed=4).gt_iso.data
    sub = Volume(np.ascontiguousarray(iso[::2, ::2, ::2]), "ZYX", (0.2, 0.2, 0.2), name="sub")
    r = restore(sub, "selfvision", factor=2.0, steps=3, device="cpu", train=TRAIN, params={"axes": "zyx"})
    assert r.volume.shape == (47, 47, 47)
    assert np.allclose(r.volume.voxel_size, (0.1, 0.1, 0.1))
    assert r.method.output_shape((24, 24, 24)) == (47, 47, 47)


def test_self_ensemble_is_aligned_on_upsampled_axes():
    """With a zero last layer the net is exact linear interpolation, which every flip/rotation
    commutes with; any off-by-(r-1) misalignment of the inverse transform would show up."""
    cls = get_method("selfvision")
    cfg = build_config("selfvision", factor=3.0, voxel_size=(0.3, 0.1, 0.1),
                       params={"axes": "zyx", "back_projection_iters": 0})
    m = cls(cfg)
    with torch.no_grad():
        m.net.up.weight.zero_()
        m.net.up.bias.zero_()
    from isoapp.training.context import RunContext

    vol = np.random.default_rng(0).random((6, 7, 9)).astype(np.float32)
    ctx = RunContext(device="cpu")
    single = m.predict(vol, ctx)
    m.params.self_ensemble = True
    ens = m.predict(vol, ctx)
    want = vol
    for ax in range(3):
        want = upsample(want, 3.0, axis=ax, order=1)
    assert single.shape == want.shape == (16, 19, 25)
    assert np.allclose(single, want, atol=1e-5) and np.allclose(ens, want, atol=1e-5)


def test_save_and_load_give_the_same_output(tubes, trained):
    r, d = trained
    again = restore(tubes.degraded, model_dir=d, device="cpu", params={"back_projection_iters": 0})
    assert again.method.sigma == pytest.approx(r.method.sigma)
    np.testing.assert_allclose(again.volume.data, r.volume.data, rtol=0, atol=1e-5)


def test_cancel_then_resume_reproduces_the_uninterrupted_run(tubes, trained, tmp_path):
    r, _ = trained
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 12

    with pytest.raises(Cancelled):
        restore(tubes.degraded, "selfvision", steps=STEPS, device="cpu", seed=3, train=TRAIN,
                params={"back_projection_iters": 0}, work_dir=tmp_path, should_stop=stop)
    assert (tmp_path / "selfvision.ckpt").is_file()
    resumed = restore(tubes.degraded, "selfvision", steps=STEPS, device="cpu", seed=3, train=TRAIN,
                      params={"back_projection_iters": 0}, work_dir=tmp_path, resume=True)
    np.testing.assert_allclose(resumed.volume.data, r.volume.data, rtol=0, atol=1e-4)


def test_same_seed_same_result_other_seed_differs(tubes):
    kw = dict(steps=4, device="cpu", train=TRAIN, params={"back_projection_iters": 0})
    a = restore(tubes.degraded, "selfvision", seed=5, **kw).volume.data
    b = restore(tubes.degraded, "selfvision", seed=5, **kw).volume.data
    c = restore(tubes.degraded, "selfvision", seed=6, **kw).volume.data
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_too_small_stack_is_a_clear_input_error():
    vol = Volume(np.random.default_rng(0).random((4, 12, 12)).astype(np.float32), "ZYX", (0.4, 0.1, 0.1))
    with pytest.raises(InputError, match="too small|needs at least 5"):
        restore(vol, "selfvision", steps=2, device="cpu", params={"axes": "zyx"})
