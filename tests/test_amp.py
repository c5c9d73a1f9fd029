"""Mixed precision: the autocast dtype choice, the GradScaler step, its checkpointing, and that every
method's optimisers step through a scaler.

This machine has no GPU. The dtype choice is tested by monkeypatching the CUDA capability query
(``torch.cuda.get_device_capability``), which is the only CUDA call it makes. The scaler logic is
tested with torch's real CPU GradScaler (``torch.amp.GradScaler("cpu")``), which runs the same
algorithm (scale, inf check, unscale, skip, grow/back-off) as the CUDA one; methods are made to use
it by monkeypatching :meth:`RunContext.grad_scaler`, so their float16 code path (every optimiser
stepped through its own scaler, scalers checkpointed) runs for real on the CPU.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from isoapp.core.errors import Cancelled
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore
from isoapp.training import device as devmod
from isoapp.training.checkpoint import load_safe
from isoapp.training.config import TrainConfig
from isoapp.training.context import RunContext
from isoapp.training.trainer import make_optimizer, optimizer_step, train_loop

torch.set_num_threads(1)
CUDA = torch.device("cuda")


# ------------------------------------------------------------------ dtype choice (capability monkeypatched)
@pytest.mark.parametrize(("capability", "dtype"), [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                                   ((7, 5), torch.float16), ((6, 1), torch.float16)])
def test_bfloat16_where_the_gpu_has_it_else_float16(monkeypatch, capability, dtype):
    # No GPU here: the capability query is monkeypatched (H100/A100 -> bf16, T4/P100 -> fp16).
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert devmod.amp_dtype(CUDA) is dtype
    assert devmod.needs_grad_scaler(CUDA) is (dtype is torch.float16)
    assert devmod.amp_dtype(CUDA, enabled=False) is None
    assert not devmod.needs_grad_scaler(CUDA, enabled=False)


def test_rocm_counts_as_bfloat16(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.0")
    assert devmod.amp_dtype(CUDA) is torch.bfloat16


def test_cpu_runs_in_float32_with_a_pass_through_scaler():
    ctx = RunContext(device="cpu")
    assert ctx.amp_dtype is None and not ctx.use_amp
    assert isinstance(ctx.autocast(), contextlib.nullcontext)
    assert not ctx.grad_scaler().is_enabled()
    t = torch.ones(3)
    assert devmod.to_device(t, torch.device("cpu")) is t  # no pinning, no copy on the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on the CI machine)")
def test_to_device_pinned_non_blocking_copy_on_cuda():
    t = torch.arange(1000, dtype=torch.float32)
    g = devmod.to_device(t, CUDA)
    assert g.is_cuda and torch.equal(g.cpu(), t)
    assert devmod.grad_scaler(CUDA).is_enabled() == (devmod.amp_dtype(CUDA) is torch.float16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on the CI machine)")
@pytest.mark.parametrize("blend", ["crop", "linear"])
def test_pipelined_cuda_prediction_matches_the_cpu(blend):
    # The CUDA path overlaps placing batch i with computing batch i + 1; it must place every tile once.
    from isoapp.training.tiling import predict_tiled

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)).eval()
    arr = np.random.default_rng(0).random((7, 50, 60), dtype=np.float32)
    kw = dict(ndim=2, tile=24, halo=4, blend=blend, batch_voxels=3 * 24 * 24)
    ref = predict_tiled(net, arr, device="cpu", **kw)
    calls = []
    got = predict_tiled(net.to(CUDA), arr, device=CUDA, progress=lambda i, n: calls.append((i, n)), **kw)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert calls[-1][0] == calls[-1][1] and [c[0] for c in calls] == sorted(c[0] for c in calls)


# ------------------------------------------------------------------ optimizer_step
def _net_and_loss(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    return net, lambda: ((net(x) - 3.0) ** 2).mean()


def _plain_step(net, loss_fn, opt, clip=None):
    opt.zero_grad(set_to_none=True)
    loss_fn().backward()
    if clip is not None:
        nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()


def test_disabled_scaler_is_bit_for_bit_the_plain_step():
    a, la = _net_and_loss()
    b, lb = _net_and_loss()
    oa, ob = torch.optim.Adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), 1e-2)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for _ in range(5):
        _plain_step(a, la, oa)
        optimizer_step(lb(), ob, scaler)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("clip", [None, 0.05])
def test_active_scaler_unscales_before_clipping_and_stepping(clip):
    # SGD is not scale-invariant, so a missing unscale (or clipping the scaled gradients) shows up.
    a, la = _net_and_loss()
    b, lb = _net_and_loss()
    oa, ob = torch.optim.SGD(a.parameters(), 0.1), torch.optim.SGD(b.parameters(), 0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=1000)
    for _ in range(3):
        _plain_step(a, la, oa, clip)
        optimizer_step(lb(), ob, scaler, clip_norm=clip)
    assert scaler.get_scale() == 2.0**12
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # the scaled gradients really were scaled: left in place they are 2**12 times the true ones
    # (with clipping, unscale_ already divided them in place)
    ob.zero_grad()
    scaler.scale(lb()).backward()
    oa.zero_grad()
    la().backward()
    ratio = float(b[0].weight.grad.norm() / a[0].weight.grad.norm())
    assert ratio == pytest.approx(2.0**12, rel=1e-4)


def test_overflow_skips_the_step_and_backs_off_the_scale():
    net, loss_fn = _net_and_loss()
    opt = torch.optim.SGD(net.parameters(), 0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer_step(loss_fn() * float("inf"), opt, scaler)
    assert scaler.get_scale() == 2.0**9
    for p, q in zip(before, net.parameters(), strict=True):
        assert torch.equal(p, q)
    optimizer_step(loss_fn(), opt, scaler)  # a finite step goes through
    assert not all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))


# ------------------------------------------------------------------ checkpointing the scaler
def _scaled_problem(seed=0):
    net, loss_fn = _net_and_loss(seed)
    cfg = TrainConfig(steps=12, checkpoint_every=5, val_every=100, preview_every=0)
    opt = make_optimizer(net.parameters(), cfg)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=2)

    def step(_):
        loss = loss_fn()
        optimizer_step(loss, opt, scaler)
        return {"loss": loss.item()}

    return net, scaler, step, {"net": net, "opt": opt, "scaler": scaler}, cfg


def test_active_scaler_is_checkpointed_and_resumed(tmp_path):
    ctx = RunContext(device="cpu", seed=0)
    ref_net, ref_scaler, step, state, cfg = _scaled_problem()
    train_loop(ctx, stage="s", steps=cfg.steps, step_fn=step, state=state, cfg=cfg)
    assert ref_scaler.get_scale() == 8.0 * 2**6  # grew every 2 steps

    calls = {"n": 0}

    def stop_after_7():
        calls["n"] += 1
        return calls["n"] > 7

    ctx = RunContext(device="cpu", seed=0, work_dir=tmp_path, should_stop=stop_after_7)
    _, _, step, state, cfg = _scaled_problem()
    with pytest.raises(Cancelled):
        train_loop(ctx, stage="s", steps=cfg.steps, step_fn=step, state=state, cfg=cfg)
    assert load_safe(tmp_path / "s.ckpt")["state"]["scaler"]["scale"] == 8.0 * 2**3
    ctx = RunContext(device="cpu", seed=0, work_dir=tmp_path, resume=True)
    net, scaler, step, state, cfg = _scaled_problem()
    res = train_loop(ctx, stage="s", steps=cfg.steps, step_fn=step, state=state, cfg=cfg)
    assert res.resumed_from == 7
    assert scaler.get_scale() == ref_scaler.get_scale()
    for p, q in zip(ref_net.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_disabled_scaler_leaves_checkpoints_unchanged(tmp_path):
    ctx = RunContext(device="cpu", seed=0, work_dir=tmp_path)
    net, loss_fn = _net_and_loss()
    opt, scaler = torch.optim.Adam(net.parameters()), ctx.grad_scaler()  # disabled on the CPU

    def step(_):
        loss = loss_fn()
        optimizer_step(loss, opt, scaler)
        return {"loss": loss.item()}

    train_loop(ctx, stage="d", steps=3, step_fn=step, state={"net": net, "opt": opt, "scaler": scaler},
               cfg=TrainConfig(steps=3))
    assert sorted(load_safe(tmp_path / "d.ckpt")["state"]) == ["net", "opt"]  # as before scalers existed


# ------------------------------------------------------------------ every method steps through its scalers
class CountingScaler(torch.amp.GradScaler):
    """A real, active CPU GradScaler that records which optimiser each step went to."""

    made: list[CountingScaler] = []

    def __init__(self) -> None:
        super().__init__("cpu", init_scale=2.0**8)
        self.scaled = 0
        self.stepped: list[int] = []
        CountingScaler.made.append(self)

    def scale(self, outputs):
        self.scaled += 1
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.stepped.append(id(optimizer))
        return super().step(optimizer, *args, **kwargs)


# the fast preset trains no discriminators (adversarial weight 0); at 0.1 they and their optimiser are back
TINY_OT = {"n_filters": 4, "depth": 1, "blur_channels": 4, "disc_filters": 4, "disc_layers": 2, "n_projections": 2,
           "max_projection_depth": 4, "tile": 48, "overlap": 8, "adversarial_weight": 0.1,
           "cycle_weight": 10.0}


@pytest.mark.parametrize(("method", "optimisers", "kw"), [
    ("isonet", 1, {"train": {"patch_size": 32, "batch_size": 2}}),
    ("selfvision", 1, {"train": {"patch_size": 32, "batch_size": 2}}),
    ("selfnet", 3, {"train": {"patch_size": 32, "batch_size": 2}}),
    ("otcyclegan", 2, {"train": {"patch_size": 16}, "params": TINY_OT}),
])
def test_every_optimiser_of_every_method_steps_through_its_own_scaler(monkeypatch, tmp_path, method, optimisers, kw):
    # Force the float16 path's scalers (real, active CPU GradScalers) into the method's training.
    CountingScaler.made = []
    monkeypatch.setattr(RunContext, "grad_scaler", lambda self: CountingScaler())
    ph = make_phantom("tubes", (33, 48, 48), factor=4, seed=1)
    kw["train"] = {**kw["train"], "checkpoint_every": 2, "preview_every": 0}
    # the phantom's own PSF: a blind estimate on 9 planes of 48 px scatters (+36 % here), and a larger
    # blur makes Self-Vision refuse a stack this small; this test is about the scalers
    fw = [s * 2.3548 * ph.params["voxel_um"] for s in (ph.params["sigma_z"], ph.params["sigma_iso"], ph.params["sigma_iso"])]
    r = restore(ph.degraded, method, steps=4, device="cpu", seed=3, work_dir=tmp_path,
                psf={"kind": "gaussian", "fwhm_um": fw}, check="lateral", **kw)  # the axial check trains a 2nd model
    assert np.isfinite(r.volume.data).all()
    used = [s for s in CountingScaler.made if s.stepped]
    assert len(used) == optimisers
    assert len({o for s in used for o in s.stepped}) == optimisers  # one optimiser per scaler, all distinct
    for s in used:
        assert len(set(s.stepped)) == 1
        assert s.scaled == len(s.stepped) > 0  # every backward of that optimiser's loss was scaled
    # the active scalers are saved with the checkpoints, so a resumed float16 run keeps its loss scale
    saved = [k for f in tmp_path.glob("*.ckpt") for k, v in load_safe(f)["state"].items() if "scale" in v]
    assert len(set(saved)) == optimisers
