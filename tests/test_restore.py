"""restore(): output grid, calibration, channels, models, baselines and a real IsoNet run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoapp.core.errors import Cancelled, ConfigError, InputError, ModelError
from isoapp.core.volume import Volume
from isoapp.physics.forward import output_length
from isoapp.physics.psf import psf_on_input_grid
from isoapp.quality.metrics import psnr
from isoapp.quality.phantoms import make_phantom
from isoapp.run.resolve import resolve_psf
from isoapp.run.restore import restore
from isoapp.training.config import PSFSpec

torch.set_num_threads(2)


def _vol(nz=9, ny=40, nx=40, dz=0.8, dxy=0.2, seed=0):
    data = np.random.default_rng(seed).random((nz, ny, nx), dtype=np.float32)
    return Volume(data, voxel_size=(dz, dxy, dxy), name="rand")


@pytest.mark.parametrize("factor", [4.0, 2.5, 3.0])
def test_linear_output_grid_and_calibration(factor):
    v = _vol(dz=0.2 * factor)
    r = restore(v, "linear")
    n = v.shape[0]
    assert r.volume.shape == (output_length(n, factor), 40, 40)
    assert r.volume.shape[0] == int(np.floor((n - 1) * factor)) + 1
    assert r.volume.voxel_size == pytest.approx((0.2, 0.2, 0.2))
    if float(factor).is_integer():  # output[F*i] is aligned with input[i]
        np.testing.assert_allclose(r.volume.data[:: int(factor)], v.data, atol=1e-5)


def test_factor_override_and_voxel_size_override():
    v = _vol(dz=0.2)  # metadata says isotropic
    with pytest.raises(ConfigError, match="already isotropic"):
        restore(v, "linear")
    assert restore(v, "linear", factor=2).volume.shape[0] == 17
    r = restore(v, "linear", voxel_size=(0.6, 0.2, 0.2))
    assert r.volume.shape[0] == 25 and r.volume.voxel_size[0] == pytest.approx(0.2)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InputError, match="at least 3"):
        restore(_vol(nz=2), "linear")
    with pytest.raises(ConfigError, match="over 10"):
        restore(_vol(dz=3.0), "linear")
    with pytest.raises(ConfigError, match="unknown method"):
        restore(_vol(), "nosuchmethod")
    bad = _vol()
    bad.data[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        restore(bad, "linear")


def test_multichannel_restored_channel_by_channel():
    a = _vol(seed=1).data
    v = Volume(np.stack([a, 2 * a + 1]), axes="CZYX", voxel_size=(0.8, 0.2, 0.2))
    r = restore(v, "cubic")
    assert r.volume.axes == "CZYX" and r.volume.shape == (2, 33, 40, 40)
    np.testing.assert_allclose(r.volume.data[1], 2 * r.volume.data[0] + 1, rtol=1e-4, atol=1e-4)


def test_rl_deconvolution_sharpens_axially():
    ph = make_phantom("beads", (33, 48, 48), factor=4, seed=1)
    lin = restore(ph.degraded, "linear").volume.data
    fwhm = (1.0, 0.305, 0.305)
    rl = restore(ph.degraded, "rl", psf={"kind": "gaussian", "fwhm_um": fwhm}, params={"iterations": 30})
    ref = ph.gt_iso.data[: lin.shape[0]]
    # deconvolution concentrates the beads: the axial profile through a bead gets higher and narrower
    z, y, x = ph.params["centres"][0]
    assert rl.volume.data[:, y, x].max() > 1.5 * lin[:, y, x].max()
    assert rl.volume.shape == lin.shape and np.isfinite(ref).all()


def test_psf_resolution_and_input_grid():
    spec = PSFSpec(kind="gaussian", fwhm_um=(0.8, 0.2, 0.2))
    p = resolve_psf(spec, (0.4, 0.1, 0.1), 4)
    assert p.ndim == 3 and p.shape[0] > p.shape[1] and abs(p.sum() - 1) < 1e-5
    pin = psf_on_input_grid(p, 4)
    assert pin.shape[0] < p.shape[0] and pin.shape[1:] == p.shape[1:]
    assert resolve_psf(PSFSpec(), (0.4, 0.1, 0.1), 4) is None  # auto: estimated from the stack
    nyq = resolve_psf(PSFSpec(kind="nyquist"), (0.4, 0.1, 0.1), 4)
    assert nyq.shape[0] > nyq.shape[1]


@pytest.fixture(scope="module")
def tubes():
    return make_phantom("tubes", (33, 64, 64), factor=4, seed=2)


def test_isonet_beats_linear_and_saves_reloads(tubes, tmp_path):
    fwhm = (0.1 * 2.3548 * 4, 0.2355, 0.2355)
    kw = dict(psf={"kind": "gaussian", "fwhm_um": fwhm}, steps=150, device="cpu", seed=0)
    r = restore(tubes.degraded, "isonet", save_model=tmp_path / "model", **kw)
    ref = tubes.gt_iso.data
    lin = restore(tubes.degraded, "linear").volume.data
    gain = psnr(ref, r.volume.data, normalize="minmse") - psnr(ref, lin, normalize="minmse")
    assert gain > 1.0, gain
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "model" / "weights.pt").is_file()
    again = restore(tubes.degraded, "isonet", model_dir=tmp_path / "model", device="cpu")
    np.testing.assert_allclose(again.volume.data, r.volume.data, atol=1e-5)
    assert again.train_seconds == 0
    # a model trained for factor 4 refuses a stack that needs factor 2
    v2 = tubes.degraded.with_data(tubes.degraded.data, voxel_size=(0.2, 0.1, 0.1))
    with pytest.raises(ModelError, match="factor"):
        restore(v2, model_dir=tmp_path / "model")


def test_isonet_cancel_then_resume(tubes, tmp_path):
    n = {"k": 0}

    def stop():
        n["k"] += 1
        return n["k"] > 5

    with pytest.raises(Cancelled):
        restore(tubes.degraded, "isonet", steps=12, device="cpu", work_dir=tmp_path, should_stop=stop,
                train={"checkpoint_every": 4})
    assert (tmp_path / "isonet.ckpt").is_file()
    events = []
    r = restore(tubes.degraded, "isonet", steps=12, device="cpu", work_dir=tmp_path, resume=True,
                emit=events.append, train={"checkpoint_every": 4})
    steps = [e.step for e in events if type(e).__name__ == "ProgressEvent" and e.stage == "isonet"]
    assert steps[0] == 6 and steps[-1] == 12  # continued, not restarted
    assert r.volume.shape[0] == 33
