"""Self-Net: real (tiny) training through restore(): grid, save/load, cancel/resume, determinism,
the two stages' learning and a quality check against linear interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoapp.core.errors import Cancelled, InputError
from isoapp.methods import available_methods
from isoapp.methods.nets.selfnet import ImagePool, cycle_loss, ssim
from isoapp.physics.forward import output_length
from isoapp.quality.metrics import compute_metrics
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore
from isoapp.training.events import PreviewEvent, ProgressEvent

# 1 thread: on a shared, oversubscribed 2-core CPU, 2 OpenMP threads spin and run ~10x slower
torch.set_num_threads(1)

TINY = dict(steps=12, device="cpu", seed=3,
            train={"patch_size": 32, "batch_size": 2, "checkpoint_every": 2, "preview_every": 0})


@pytest.fixture(scope="module")
def tubes():
    return make_phantom("tubes", (33, 48, 48), factor=4, seed=1)


@pytest.fixture(scope="module")
def trained(tubes, tmp_path_factory):
    model = tmp_path_factory.mktemp("selfnet_model")
    r = restore(tubes.degraded, "selfnet", save_model=model, **TINY)
    return r, model


def test_registered_and_psf_free():
    from isoapp.methods.base import get_method

    assert "selfnet" in available_methods()
    cls = get_method("selfnet")
    assert cls.uses_psf is False and cls.trainable


def test_output_grid_and_report(tubes, trained):
    r, _ = trained
    nz = tubes.degraded.data.shape[0]
    assert r.volume.data.shape == (output_length(nz, 4.0), 48, 48)
    dz, dy, dx = tubes.degraded.voxel_size
    assert np.allclose(r.volume.voxel_size, (dz / 4, dy, dx))
    assert np.isfinite(r.volume.data).all()
    rep = r.method.report()
    assert rep["parameters"] == (rep["parameters_generators"] + rep["parameters_discriminators"]
                                 + rep["parameters_deblurnet"])
    assert len(rep["epoch_s"]) == r.method.params.epochs


def test_non_integer_factor():
    ph = make_phantom("tubes", (41, 48, 48), factor=2.5, seed=2)
    previews = []

    def emit(ev) -> None:
        if isinstance(ev, PreviewEvent):
            previews.append(ev)

    r = restore(ph.degraded, "selfnet", steps=4, device="cpu", params={"epochs": 2}, emit=emit,
                train={"patch_size": 32, "batch_size": 2, "preview_every": 2})
    assert previews and previews[-1].planes["xz"].shape == (41, 48)
    assert r.volume.data.shape == (output_length(ph.degraded.data.shape[0], 2.5), 48, 48)
    assert r.volume.data.shape[0] == ph.gt.data.shape[0]  # floor(16 * 2.5) + 1 = 41


def test_save_load_and_determinism(tubes, trained):
    r, model = trained
    again = restore(tubes.degraded, model_dir=model, device="cpu")
    np.testing.assert_array_equal(again.volume.data, r.volume.data)
    same_seed = restore(tubes.degraded, "selfnet", **TINY)
    np.testing.assert_array_equal(same_seed.volume.data, r.volume.data)


def test_cancel_then_resume_matches_uninterrupted(tubes, trained, tmp_path):
    r, _ = trained
    seen: list[int] = []

    def emit(ev) -> None:
        if isinstance(ev, ProgressEvent) and ev.stage == "selfnet_e1_stage1":
            seen.append(ev.step)

    # 4 steps per stage and epoch: stop after step 2 of epoch 2's stage 1
    with pytest.raises(Cancelled):
        restore(tubes.degraded, "selfnet", work_dir=tmp_path, emit=emit, should_stop=lambda: len(seen) >= 2,
                **TINY)
    assert seen == [1, 2]
    assert (tmp_path / "selfnet_e0_stage2.ckpt").is_file()
    assert (tmp_path / "selfnet_e1_stage1.ckpt").is_file()
    assert not (tmp_path / "selfnet_e2_stage1.ckpt").exists()
    resumed = restore(tubes.degraded, "selfnet", work_dir=tmp_path, resume=True, **TINY)
    np.testing.assert_allclose(resumed.volume.data, r.volume.data, atol=1e-5)


def test_image_pool_and_losses():
    rng = np.random.default_rng(0)
    pool = ImagePool(3, rng)
    a = torch.arange(2 * 4.0).reshape(2, 1, 2, 2)
    assert torch.equal(pool.query(a), a)  # filling
    pool.query(a + 100)
    assert len(pool.images) == 3
    st = pool.state_dict()
    other = ImagePool(3, np.random.default_rng(0))
    other.load_state_dict(st)
    assert all(torch.equal(x, y) for x, y in zip(other.images, pool.images, strict=True))
    x = torch.rand(2, 1, 24, 24)
    assert abs(float(ssim(x, x)) - 1.0) < 1e-5
    assert float(ssim(x, torch.rand(2, 1, 24, 24))) < 0.3
    y = x.clone().requires_grad_(True)
    loss = cycle_loss(y + 0.1, x, 1.0)
    loss.backward()
    assert y.grad is not None and loss.item() > 0.09


def test_too_small_stack_is_a_user_error():
    ph = make_phantom("tubes", (9, 48, 48), factor=4, seed=0)  # 3 planes -> 9 interpolated
    with pytest.raises(InputError, match="too small for Self-Net|needs at least 5"):
        restore(ph.degraded, "selfnet", steps=2, device="cpu")


def test_deblurnet_learns_and_changes_the_output():
    """Real training: DeblurNet's pixel loss falls substantially and it changes the interpolated stack
    (an untrained, identity-initialised residual DeblurNet returns exactly the linear interpolation)
    without degrading it. A PSNR gain over linear is not reliable at this size and step count.

    The loss is compared within the second epoch's stage 2: G_A starts as the identity, so epoch 0's
    pairs are nearly trivial, and each stage 1 changes the blur DeblurNet must undo (measured, seed 0:
    0.0244 -> 0.0154 in epoch 1; epoch 0 0.0163 -> 0.0171)."""
    ph = make_phantom("tubes", (49, 64, 64), factor=4, seed=0)
    r = restore(ph.degraded, "selfnet", steps=180, device="cpu", seed=0,
                train={"patch_size": 48, "batch_size": 4, "preview_every": 0})
    lin = restore(ph.degraded, "linear", device="cpu").volume.data
    hist = r.method.loss_history
    loss = hist["e1_stage2"]
    assert np.mean(loss[-10:]) < 0.8 * np.mean(loss[:5]), (loss[:5], loss[-10:])
    rel = np.linalg.norm(r.volume.data - lin) / np.linalg.norm(lin)
    assert rel > 0.03, rel
    p_sn = compute_metrics(ph.gt_iso.data, r.volume.data)["psnr"]
    p_lin = compute_metrics(ph.gt_iso.data, lin)["psnr"]
    assert p_sn > p_lin - 0.3, (p_sn, p_lin)


def test_learned_blur_generator_option(tubes):
    from isoapp.methods.nets.selfnet import BlurThenNet

    g = BlurThenNet(9, 5, n_filters=4, depth=1)
    k = g.kernel().detach()
    assert abs(k.sum().item() - 1.0) < 1e-6 and torch.allclose(k, k.flip(0)) and torch.allclose(k, k.flip(1))
    x = torch.rand(1, 1, 16, 16)
    assert float(k[4, 2]) == float(k.max()) > 0.5  # starts close to the identity
    assert BlurThenNet(9, 5, with_net=False)(x).shape == x.shape
    r = restore(tubes.degraded, "selfnet", steps=4, device="cpu", params={"epochs": 2, "learn_blur": True,
                                                                          "cycle_noise": 0.05},
                train={"patch_size": 32, "batch_size": 2, "preview_every": 0})
    rep = r.method.report()
    assert rep["learned_blur_sigma_px"] > 0 and np.isfinite(r.volume.data).all()
    # the default (unimodal) kernel stays separable and falls off from its centre after training
    k = r.method.nets["G_A"].kernel().detach().double()
    rows, cols = k.sum(1), k.sum(0)
    assert torch.allclose(k, torch.outer(rows, cols), atol=1e-7)
    for prof in (rows, cols):
        half = prof[prof.numel() // 2:]
        assert bool((half[1:] <= half[:-1] + 1e-9).all()) and torch.allclose(prof, prof.flip(0))
    with pytest.raises(ValueError, match="unimodal"):
        BlurThenNet(9, 5, shape="gaussian")



@pytest.mark.parametrize("params", [{"degradation_order": "sample_then_blur", "learn_blur": False},
                                    {"learn_blur": True, "blur_net": True, "lambda_spectral": 0.0},
                                    {"learn_blur": True, "blur_shape": "free"}])
def test_other_generator_forms_train_and_restore(tubes, params):
    """The paper's order (sample, then a U-Net G_A), the kernel + U-Net G_A without the spectral term and
    the free (one weight per tap) kernel."""
    r = restore(tubes.degraded, "selfnet", steps=4, device="cpu", params={"epochs": 2, **params},
                train={"patch_size": 32, "batch_size": 2, "preview_every": 0})
    assert r.volume.data.shape == (output_length(tubes.degraded.data.shape[0], 4.0), 48, 48)
    assert np.isfinite(r.volume.data).all() and r.method.final_losses["stage1_cycle"] > 0
    assert ("learned_blur_sigma_px" in r.method.report()) == params["learn_blur"]
