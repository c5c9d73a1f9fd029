"""Park et al.'s 3D OT-cycleGAN: real (tiny) training through ``restore``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoapp.core.errors import Cancelled, ConfigError, InputError
from isoapp.data.normalize import normalize
from isoapp.methods.base import build_config
from isoapp.methods.nets.otcyclegan import DeepLinearGenerator, PatchDiscriminator, project
from isoapp.methods.otcyclegan import OTCycleGAN, match_histogram
from isoapp.physics.forward import output_length, resample_along, upsample
from isoapp.physics.psf import gaussian_psf
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore
from isoapp.training.events import ProgressEvent
from isoapp.training.sampler import PatchSampler

torch.set_num_threads(1)

# over the fast preset; the discriminators (weight 0.1) and the cycle (weight 10) stay in so that their
# training, saving and resuming are exercised: the balanced and quality presets use them
TINY = {"n_filters": 4, "depth": 1, "blur_channels": 4, "disc_filters": 4, "disc_layers": 2, "n_projections": 2,
        "max_projection_depth": 4, "tile": 48, "overlap": 8, "adversarial_weight": 0.1, "cycle_weight": 10.0}
# Park's form of F (a narrow start, learned from the first step) without lateral self-supervision
PARK = {**TINY, "blur_init_axial": "sigma", "blur_freeze": 0.0, "lambda_lateral": 0.0}
TRAIN = {"patch_size": 16, "checkpoint_every": 2, "preview_every": 0}


@pytest.fixture(scope="module")
def tubes():
    return make_phantom("tubes", (49, 40, 40), factor=4, seed=1)


@pytest.fixture(scope="module")
def trained(tubes):
    events = []
    return _run(tubes, emit=events.append), events


def _run(ph, steps=4, **kw):
    kw.setdefault("params", TINY)
    kw.setdefault("train", TRAIN)
    return restore(ph.degraded, "otcyclegan", steps=steps, device="cpu", seed=3, **kw)


def test_grid_calibration_report_and_determinism(tubes, trained):
    r, events = trained
    nz = tubes.degraded.shape[0]
    assert r.volume.shape == (output_length(nz, 4.0), 40, 40)
    dz, dy, dx = tubes.degraded.voxel_size
    assert r.volume.voxel_size == pytest.approx((dz / 4, dy, dx))
    assert np.isfinite(r.volume.data).all()
    rep = r.method.report()
    assert rep["parameters"] == rep["parameters_G"] + rep["parameters_F"] == r.method.parameter_count()
    assert rep["parameters_discriminators"] > 0 and rep["seconds_per_step"] > 0
    assert np.isfinite(rep["psf_fwhm_axial_px"])
    assert rep["psf_fwhm_axial_um"] == pytest.approx(rep["psf_fwhm_axial_px"] * dy)
    assert any(isinstance(e, ProgressEvent) and e.stage == "restore" for e in events)
    again = _run(tubes)
    np.testing.assert_array_equal(r.volume.data, again.volume.data)


def test_non_integer_factor_and_histogram_matching():
    ph = make_phantom("tubes", (41, 32, 32), factor=2.5, seed=2)
    params = {**TINY, "histogram_match": True}
    r = restore(ph.degraded, "otcyclegan", steps=2, device="cpu", params=params, train=TRAIN)
    nz = ph.degraded.shape[0]
    assert r.volume.shape == (output_length(nz, 2.5), 32, 32)
    # histogram matched to the input: same quantiles as the (denormalised) input
    q = np.linspace(0.01, 0.99, 9)
    np.testing.assert_allclose(np.quantile(r.volume.data, q), np.quantile(ph.degraded.data, q), rtol=0.05, atol=0.01)


def test_match_histogram_is_a_monotone_rank_mapping():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(6, 7, 8)).astype(np.float32)
    ref = rng.exponential(size=(6, 7, 8)).astype(np.float32)
    out = match_histogram(img, ref)
    np.testing.assert_allclose(np.sort(out, axis=None), np.sort(ref, axis=None), rtol=1e-6)
    np.testing.assert_array_equal(np.argsort(out, axis=None), np.argsort(img, axis=None))


def test_save_and_load_give_the_same_output(tubes, tmp_path):
    r = _run(tubes, steps=2, save_model=tmp_path / "m")
    r2 = restore(tubes.degraded, "otcyclegan", model_dir=tmp_path / "m", device="cpu")
    np.testing.assert_array_equal(r.volume.data, r2.volume.data)
    np.testing.assert_array_equal(r.method.learned_psf(), r2.method._psf)  # loaded, not recomputed
    assert r2.method.report()["psf_fwhm_axial_px"] == pytest.approx(r.method.report()["psf_fwhm_axial_px"])


def test_cancel_then_resume_matches_an_uninterrupted_run(tubes, trained, tmp_path):
    full = trained[0]  # 4 uninterrupted steps
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3  # stops before step 3 of 4 (after the checkpoint at step 2)

    with pytest.raises(Cancelled):
        _run(tubes, steps=4, work_dir=tmp_path, should_stop=stop)
    assert (tmp_path / "otcyclegan.ckpt").is_file()
    resumed = _run(tubes, steps=4, work_dir=tmp_path, resume=True)
    np.testing.assert_allclose(resumed.volume.data, full.volume.data, rtol=1e-5, atol=1e-5)


def test_no_discriminators_at_adversarial_weight_zero(tubes, tmp_path):
    """At weight 0 the adversarial losses cannot reach G: no discriminator is built, trained or saved, and a
    cancelled run still resumes to the uninterrupted result."""
    params = {**TINY, "adversarial_weight": 0.0, "lambda_lateral": 30.0}
    events = []
    full = _run(tubes, steps=4, params=params, emit=events.append)
    logs = [e.extra for e in events if isinstance(e, ProgressEvent) and e.stage == "otcyclegan"]
    assert logs and all("loss_d" not in x and np.isfinite(x["lateral"]) for x in logs)
    assert "parameters_discriminators" not in full.method.report()
    assert np.abs(full.volume.data - restore(tubes.degraded, "linear").volume.data).max() > 0  # G trained
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        _run(tubes, steps=4, params=params, work_dir=tmp_path, should_stop=stop)
    ckpt = torch.load(tmp_path / "otcyclegan.ckpt", weights_only=True)
    assert "D" not in ckpt["state"] and "G" in ckpt["state"]
    resumed = _run(tubes, steps=4, params=params, work_dir=tmp_path, resume=True)
    np.testing.assert_allclose(resumed.volume.data, full.volume.data, rtol=1e-5, atol=1e-5)


def test_lateral_self_supervision_alone_skips_the_cycle(tubes):
    """With the cycle and the adversarial losses off, G learns from the lateral pairs only: the real crop's
    cycle is not computed (nor reported), and a configuration that would train nothing is refused."""
    params = {**TINY, "adversarial_weight": 0.0, "cycle_weight": 0.0, "lambda_lateral": 30.0}
    events = []
    r = _run(tubes, steps=3, params=params, emit=events.append)
    logs = [e.extra for e in events if isinstance(e, ProgressEvent) and e.stage == "otcyclegan"]
    assert logs and all("cycle" not in x and x["lateral"] > 0 for x in logs)
    assert np.abs(r.volume.data - restore(tubes.degraded, "linear").volume.data).max() > 0  # G trained
    with pytest.raises(ConfigError, match="nothing would train G"):
        _run(tubes, steps=1, params={**params, "lambda_lateral": 0.0})


def _cycle_error(method, ph) -> float:
    """Mean |F(G(y)) - y| over the whole (normalised, z-interpolated) stack."""
    y = torch.from_numpy(upsample(normalize(ph.degraded.data)[0], 4.0)[:48])[None, None]
    with torch.no_grad():
        return float((method.nets["F"](method.nets["G"](y)) - y).abs().mean())


def test_training_reduces_the_cycle_error_and_changes_the_output(tubes):
    train = {**TRAIN, "lr": 2e-3}
    start = _run(tubes, steps=1, train=train, params=PARK)
    r = _run(tubes, steps=12, train=train, params=PARK)
    assert _cycle_error(r.method, tubes) < 0.75 * _cycle_error(start.method, tubes)  # F learns to re-blur G(y)
    lin = restore(tubes.degraded, "linear").volume.data
    assert np.abs(r.volume.data - lin).mean() > 1e-3 * np.abs(lin).mean()


def test_deep_linear_generator_is_one_convolution_and_its_psf_is_measured():
    torch.manual_seed(0)
    f = DeepLinearGenerator(4)
    assert all(layer.bias is None for layer in f.layers)
    assert [layer.kernel_size[0] for layer in f.layers] == [7, 5, 3, 1, 1, 1]
    x = torch.randn(2, 1, 20, 22, 24)
    with torch.no_grad():
        np.testing.assert_allclose(f(x)[..., 6:-6, 6:-6, 6:-6], f.layered(x)[..., 6:-6, 6:-6, 6:-6], atol=1e-4)
        # linear: F(a x + b z) = a F(x) + b F(z)
        z = torch.randn_like(x)
        np.testing.assert_allclose(f(2 * x - z), 2 * f(x) - f(z), atol=1e-4)


@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.0])
def test_deep_linear_generator_starts_as_a_centred_normalised_isotropic_gaussian(sigma):
    torch.manual_seed(1)
    f = DeepLinearGenerator(8, init_sigma=sigma)
    with torch.no_grad():
        h = f.impulse_response().double().numpy()
    assert h.shape == (13, 13, 13)
    assert np.unravel_index(np.argmax(h), h.shape) == (6, 6, 6)  # centred
    assert h.sum() == pytest.approx(1.0, abs=0.02)  # normalised: F starts close to preserving intensities
    ref = gaussian_psf((sigma,) * 3, (13, 13, 13))  # sigma 0: a unit impulse
    assert np.abs(h - ref).sum() < 0.1  # the Gaussian (or impulse) plus a small perturbation
    profiles = [h[:, 6, 6], h[6, :, 6], h[6, 6, :]]  # isotropic: the same profile along z, y and x
    np.testing.assert_allclose(profiles[0], profiles[1], atol=0.02)
    np.testing.assert_allclose(profiles[0], profiles[2], atol=0.02)
    for layer in f.layers:  # every weight stays trainable, not just the Gaussian path
        assert (layer.weight != 0).float().mean() > 0.5
    # plain Kaiming initialisation gives a random, not normalised, kernel
    torch.manual_seed(1)
    rand = DeepLinearGenerator(8, init_sigma=None)
    with torch.no_grad():
        assert np.abs(rand.impulse_response().double().numpy() - ref).sum() > 1.0


def test_learned_psf_fwhm_of_a_known_blur(tubes):
    r = _run(tubes, steps=1)
    m = r.method
    f = m.nets["F"]
    k = gaussian_psf((1.5, 0.8, 0.8), (7, 7, 7))
    with torch.no_grad():
        for i, layer in enumerate(f.layers):
            layer.weight.zero_()
            c = layer.kernel_size[0] // 2
            if i == 0:
                layer.weight[0, 0] = torch.from_numpy(np.ascontiguousarray(k[::-1, ::-1, ::-1]))
            else:
                layer.weight[0, 0, c, c, c] = 1.0
    m._psf = None
    fw = m.psf_fwhm()
    assert fw["psf_fwhm_axial_px"] == pytest.approx(2.3548 * 1.5, rel=0.1)
    assert fw["psf_fwhm_lateral_px"] == pytest.approx(2.3548 * 0.8, rel=0.1)
    assert m.learned_psf().sum() == pytest.approx(1.0, abs=1e-5)


def test_projections_and_discriminator_shapes():
    v = torch.zeros(2, 1, 8, 10, 12)
    v[0, 0, 3, 4, 5] = 1.0
    p = project(v, 0, [2, 0], 3)  # xy MIPs of planes 2-4 and 0-2
    assert p.shape == (4, 1, 10, 12)
    assert p[0, 0, 4, 5] == 1.0 and p[2, 0].max() == 0.0
    assert project(v, 1, [0], 2).shape == (2, 1, 8, 12)
    assert project(v, 2, [0], 1).shape == (2, 1, 8, 10)
    d = PatchDiscriminator(8, 2)
    assert d(torch.zeros(3, 1, 16, 16)).shape == (3, 1, 2, 2)


def test_user_errors(tubes):
    with pytest.raises(ConfigError, match="max_projection_depth"):
        _run(tubes, params={**TINY, "min_projection_depth": 5, "max_projection_depth": 3})
    with pytest.raises(ConfigError, match="tile"):
        _run(tubes, params={**TINY, "tile": 20, "overlap": 10})
    thin = make_phantom("tubes", (13, 32, 32), factor=4, seed=0)
    with pytest.raises(InputError, match="too small|needs at least 5"):
        restore(thin.degraded, "otcyclegan", steps=1, device="cpu", params=TINY, train=TRAIN)


@pytest.mark.parametrize("factor", [4.0, 3.0])
def test_physical_sampling_reproduces_crops_of_the_interpolated_stack(factor):
    """With G = F = identity the resampled reconstruction of a crop of ``up`` is the crop (away from its z ends).

    ``up`` is piecewise linear between the acquired planes, so sampling it at the crop's acquired planes and
    interpolating back gives it unchanged only if the phase (from the crop's z start and z flip) is right.
    """
    cfg = build_config("otcyclegan", factor=factor, voxel_size=(0.1 * factor, 0.1, 0.1), params=PARK, train=TRAIN)
    m = OTCycleGAN(cfg)
    rng = np.random.default_rng(0)
    up = upsample(rng.random((14, 18, 18)).astype(np.float32), factor).astype(np.float32)
    cz, c = m._crop_shape(up.shape)
    margin = int(np.ceil(factor))
    assert cz >= c + 2 * margin  # the judged centre keeps the lateral patch size
    crops, mats = m._draw_batch(PatchSampler(up, (cz, c, c), rng, foreground_fraction=0.0), rng, 24)
    assert mats.shape == (24, cz - 2 * margin, cz)
    rec = resample_along(torch.from_numpy(crops[:, None]), torch.from_numpy(mats), axis=2)[:, 0].numpy()
    np.testing.assert_allclose(rec, crops[:, margin:cz - margin], atol=1e-5)
    # the check has teeth: the matrix of another phase does not reproduce the crops
    wrong = resample_along(torch.from_numpy(crops[:, None]), torch.from_numpy(np.roll(mats, 1, axis=0)), axis=2)
    assert np.abs(wrong[:, 0].numpy() - crops[:, margin:cz - margin]).max() > 0.05
    # Park's original form: no resampling, the whole crop
    park = OTCycleGAN(build_config("otcyclegan", factor=factor, voxel_size=(0.1 * factor, 0.1, 0.1),
                                   params={**PARK, "physical_sampling": False}, train=TRAIN))
    assert park._crop_shape(up.shape) == (c, c)
    assert park._draw_batch(PatchSampler(up, (c, c, c), rng, foreground_fraction=0.0), rng, 2)[1] is None


def test_fit_kernel_gives_f_a_wide_axial_start():
    """The 7-5-3-1-1-1 layers, fitted together, hold an axial Gaussian far wider than the first layer could."""
    from isoapp.quality.fwhm import fwhm_profile

    torch.manual_seed(0)
    f = DeepLinearGenerator(4, init_sigma=0.5)
    ax = torch.arange(2 * f.radius + 1, dtype=torch.float64) - f.radius
    gz, gl = torch.exp(-0.5 * (ax / 3.5) ** 2), torch.exp(-0.5 * (ax / 0.5) ** 2)
    target = gz[:, None, None] * gl[None, :, None] * gl[None, None, :]
    target /= target.sum()
    before = f.impulse_response().detach().double()
    err = f.fit_kernel(target)
    h = f.impulse_response().detach().double()
    c = f.radius
    want = fwhm_profile(target[:, c, c].numpy())
    assert fwhm_profile(before[:, c, c].numpy()) < 0.5 * want
    assert err < 0.05 and abs(fwhm_profile(h[:, c, c].numpy()) / want - 1) < 0.05
    x = torch.rand(1, 1, 20, 20, 20)
    assert torch.allclose(f(x)[..., 8:12, 8:12, 8:12], f.layered(x)[..., 8:12, 8:12, 8:12], atol=1e-5)


def test_reflect_padding_keeps_a_blurred_crop_bright_at_its_borders():
    """Zero padding darkens a wide blur's output near the crop's borders; mirrored padding does not."""
    torch.manual_seed(0)
    flat = torch.ones(1, 1, 20, 20, 20)
    zeros = DeepLinearGenerator(4, init_sigma=2.0, noise=0.0)
    mirror = DeepLinearGenerator(4, init_sigma=2.0, noise=0.0, padding="reflect")
    mirror.load_state_dict(zeros.state_dict())
    with torch.no_grad():
        z, r = zeros(flat), mirror(flat)
    assert float(z[0, 0, 0].mean()) < 0.8  # an edge plane loses light
    torch.testing.assert_close(r, flat, atol=1e-4, rtol=0)
    torch.testing.assert_close(r[..., 8:12, 8:12, 8:12], z[..., 8:12, 8:12, 8:12], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="padding"):
        DeepLinearGenerator(4, padding="wrap")


def test_lateral_pair_turns_y_to_z_then_samples_it_as_acquired():
    """The pair's input is the crop turned (y along z), blurred by F and sampled; the target is the turned crop.

    Sampling and linear interpolation reproduce a crop that is linear along the sampled axis, so a crop that
    varies only along y gives input == target only if y is the axis that is sampled; one that varies along y
    at random does not; and the blur module is applied to the input only.
    """
    cfg = build_config("otcyclegan", factor=4.0, voxel_size=(0.4, 0.1, 0.1), params=TINY, train=TRAIN)
    m = OTCycleGAN(cfg)
    rng = np.random.default_rng(0)
    cz, c = 32, 24
    ramp_y = np.broadcast_to(np.linspace(0, 1, c, dtype=np.float32)[None, :, None], (cz, c, c))
    noise_z = np.broadcast_to(rng.random((cz, 1, 1), dtype=np.float32), (cz, c, c))
    noise_y = np.broadcast_to(rng.random((1, c, 1), dtype=np.float32), (cz, c, c))
    x = torch.from_numpy(np.stack([ramp_y, noise_z, noise_y]).copy())[:, None]
    inp, target = m._lateral_pair(x, torch.nn.Identity(), rng)
    k = 16  # 24 - 2 * 4 planes, a multiple of G's divisor
    assert inp.shape == target.shape == (3, 1, k, cz, c)
    torch.testing.assert_close(target, x.transpose(2, 3)[:, :, 4:4 + k])
    torch.testing.assert_close(inp[:2], target[:2], atol=1e-5, rtol=0)  # linear along y; constant along y
    assert float((inp[2] - target[2]).abs().max()) > 0.05  # random along y: the sampling shows
    doubled, _ = m._lateral_pair(x, _Scale(2.0), np.random.default_rng(0))
    torch.testing.assert_close(doubled[:2], 2 * target[:2], atol=1e-5, rtol=0)


class _Scale(torch.nn.Module):
    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s * x


def test_lateral_self_supervision_with_f_held_at_the_spectral_estimate():
    """The fast preset's recipe, tiny: F starts at the stack's blur estimate and stays there.

    The phantom's axial blur (sigma_z 2.5, 2.1 px beyond the lateral one) fits F's 13-voxel kernel;
    the module's stack (sigma_z 4) is estimated at 4.9 px on its 13 planes of 40 px, wider than
    that kernel can hold (a warning says so), so its FWHM could not match."""
    params = {**TINY, "lambda_lateral": 30.0, "blur_init_axial": "spectral", "blur_freeze": 1.0}
    events = []
    narrow = make_phantom("tubes", (49, 40, 40), factor=4, seed=1, sigma_z=2.5)
    r = _run(narrow, steps=3, params=params, emit=events.append)
    logs = [e.extra for e in events if isinstance(e, ProgressEvent) and e.stage == "otcyclegan"]
    assert logs and all(np.isfinite(x["lateral"]) and x["lateral"] > 0 for x in logs)
    rep = r.method.report()
    assert rep["psf_fwhm_axial_px"] == pytest.approx(rep["axial_fwhm_estimate_px"], rel=0.05)
    # 16 px crops would leave 8 px after the sampling's margins: they grow to 24 px
    assert r.method._crop_shape((49, 40, 40)) == (32, 24)
    park = build_config("otcyclegan", factor=4.0, voxel_size=(0.4, 0.1, 0.1), params=PARK, train=TRAIN)
    assert OTCycleGAN(park)._crop_shape((49, 40, 40)) == (24, 16)
