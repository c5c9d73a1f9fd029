"""The shared engine: tiling exactness, train-loop checkpoint/resume/cancel, sampler, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from isoapp.core.errors import Cancelled, ConfigError
from isoapp.methods.nets import UNet
from isoapp.training.config import TrainConfig, check_factor
from isoapp.training.context import RunContext
from isoapp.training.events import PreviewEvent, ProgressEvent
from isoapp.training.sampler import PatchSampler, augment
from isoapp.training.tiling import predict_tiled, receptive_field
from isoapp.training.trainer import make_optimizer, make_scheduler, train_loop

torch.set_num_threads(2)


def _random_unet(ndim: int, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(ndim, depth=2, n_filters=4 if ndim == 3 else 8)
    nn.init.normal_(net.head.weight, std=0.3)  # the head starts at zero (identity); make it non-trivial
    return net.eval()


@pytest.mark.parametrize("ndim,shape,tile", [(2, (3, 75, 101), 48), (3, (37, 45, 52), 32)])
def test_tiled_prediction_equals_whole_volume(ndim, shape, tile):
    net = _random_unet(ndim)
    rng = np.random.default_rng(0)
    arr = rng.random(shape, dtype=np.float32)
    halo = receptive_field(net, ndim, size=64 if ndim == 2 else 48)
    assert halo > 4
    whole = predict_tiled(net, arr, ndim=ndim, tile=None, halo=halo, divisor=net.divisor)
    tiled = predict_tiled(net, arr, ndim=ndim, tile=tile + 2 * halo, halo=halo, divisor=net.divisor,
                          batch_voxels=tile**ndim)
    assert whole.shape == arr.shape
    assert np.abs(whole - arr).max() > 1e-2  # the net does something
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_tiling_too_small_halo_differs():
    """The equality above is not vacuous: a halo smaller than the receptive field breaks it."""
    net = _random_unet(2)
    arr = np.random.default_rng(1).random((1, 96, 96), dtype=np.float32)
    whole = predict_tiled(net, arr, ndim=2, tile=None, halo=0, divisor=net.divisor)
    tiled = predict_tiled(net, arr, ndim=2, tile=32, halo=0, divisor=net.divisor)
    assert np.abs(tiled - whole).max() > 1e-3


class _Up2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv3d(1, 1, 3, padding=1)
        nn.init.normal_(self.c.weight)

    def forward(self, x):
        return self.c(nn.functional.interpolate(x, scale_factor=(2, 1, 1), mode="nearest"))


def test_tiling_with_upsampling_network_and_linear_blend():
    net = _Up2().eval()
    arr = np.random.default_rng(2).random((20, 30, 30), dtype=np.float32)
    whole = predict_tiled(net, arr, ndim=3, scale=(2, 1, 1), halo=2)
    crop = predict_tiled(net, arr, ndim=3, tile=14, scale=(2, 1, 1), halo=2)
    lin = predict_tiled(net, arr, ndim=3, tile=14, scale=(2, 1, 1), halo=2, blend="linear")
    assert whole.shape == (40, 30, 30)
    np.testing.assert_allclose(crop, whole, atol=1e-5)
    np.testing.assert_allclose(lin, whole, atol=1e-4)


def _tiny_problem(ctx: RunContext, cfg: TrainConfig):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    opt = make_optimizer(net.parameters(), cfg)
    sched = make_scheduler(opt, cfg, cfg.steps)
    data = np.random.default_rng(5).random((4, 32, 32), dtype=np.float32)
    sampler = PatchSampler(data, (16, 16), ctx.rng)

    def step(_):
        x = torch.from_numpy(sampler.sample(4)).unsqueeze(1)
        loss = ((net(x) - x.flip(-1)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss.item()}

    return net, step, {"net": net, "opt": opt, "sched": sched, "rng": ctx.rng}


def test_train_loop_cancel_and_resume_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(steps=12, checkpoint_every=5, val_every=4, preview_every=6)
    ref_ctx = RunContext(device="cpu", seed=3)
    ref_net, step, state = _tiny_problem(ref_ctx, cfg)
    train_loop(ref_ctx, stage="t", steps=cfg.steps, step_fn=step, state=state, cfg=cfg)

    calls = {"n": 0}

    def stop_after_7():
        calls["n"] += 1
        return calls["n"] > 7

    events = []
    ctx = RunContext(device="cpu", seed=3, work_dir=tmp_path, should_stop=stop_after_7, emit=events.append)
    net, step, state = _tiny_problem(ctx, cfg)
    with pytest.raises(Cancelled):
        train_loop(ctx, stage="t", steps=cfg.steps, step_fn=step, state=state, cfg=cfg,
                   preview_fn=lambda: {"xz": np.zeros((2, 2))})
    assert (tmp_path / "t.ckpt").is_file()
    assert [e.step for e in events if isinstance(e, ProgressEvent)] == list(range(1, 8))
    assert [e.step for e in events if isinstance(e, PreviewEvent)] == [6]

    ctx2 = RunContext(device="cpu", seed=3, work_dir=tmp_path, resume=True)
    net2, step2, state2 = _tiny_problem(ctx2, cfg)
    res = train_loop(ctx2, stage="t", steps=cfg.steps, step_fn=step2, state=state2, cfg=cfg)
    assert res.resumed_from == 7
    for a, b in zip(ref_net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_stop_during_preview_still_checkpoints(tmp_path):
    """A stop seen by the live preview's prediction (not by the loop) must not lose the training:
    the GUI's quit-mid-run left no checkpoint this way (found with scripts/gui_xdotool_flow.py)."""
    cfg = TrainConfig(steps=12, checkpoint_every=100, checkpoint_seconds=0, preview_every=3)
    ctx = RunContext(device="cpu", seed=3, work_dir=tmp_path)
    _, step, state = _tiny_problem(ctx, cfg)

    def preview():
        raise Cancelled("prediction stopped on request")

    with pytest.raises(Cancelled, match="stopped at step 3 of 12; checkpoint saved"):
        train_loop(ctx, stage="t", steps=cfg.steps, step_fn=step, state=state, cfg=cfg, preview_fn=preview)
    ctx2 = RunContext(device="cpu", seed=3, work_dir=tmp_path, resume=True)
    _, step2, state2 = _tiny_problem(ctx2, cfg)
    assert train_loop(ctx2, stage="t", steps=cfg.steps, step_fn=step2, state=state2, cfg=cfg).resumed_from == 3


def test_train_loop_reports_eta_and_loss_decreases():
    cfg = TrainConfig(steps=60, lr=1e-2)
    events = []
    ctx = RunContext(device="cpu", seed=0, emit=events.append)
    _, step, state = _tiny_problem(ctx, cfg)
    res = train_loop(ctx, stage="t", steps=cfg.steps, step_fn=step, state=state, cfg=cfg)
    prog = [e for e in events if isinstance(e, ProgressEvent)]
    assert prog[-1].step == 60 and prog[-1].eta_s == pytest.approx(0.0)
    assert all(e.eta_s is not None for e in prog)
    first = np.mean([h["loss"] for h in res.history[:5]])
    last = np.mean([h["loss"] for h in res.history[-5:]])
    assert last < 0.5 * first


def test_sampler_prefers_foreground():
    vol = np.zeros((4, 128, 128), np.float32)
    vol[:, 100:110, 100:110] = 1.0
    rng = np.random.default_rng(0)
    s = PatchSampler(vol, (16, 16), rng, foreground_fraction=0.9)
    hits = np.mean([s.sample(1).max() > 0 for _ in range(200)])
    uniform = PatchSampler(vol, (16, 16), np.random.default_rng(0), foreground_fraction=0.0)
    hits_u = np.mean([uniform.sample(1).max() > 0 for _ in range(200)])
    assert hits > 0.8 and hits_u < 0.3


def test_augment_applies_same_transform_to_pairs():
    rng = np.random.default_rng(0)
    a = np.arange(16.0).reshape(4, 4)
    for _ in range(10):
        x, y = augment([a, a * 2], rng)
        np.testing.assert_array_equal(y, 2 * x)


@pytest.mark.parametrize("f,msg", [(1.0, "already isotropic"), (0.5, "already isotropic"), (12, "over 10"),
                                   (float("nan"), "not a number")])
def test_factor_validation_messages(f, msg):
    with pytest.raises(ConfigError, match=msg):
        check_factor(f)
