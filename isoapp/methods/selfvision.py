"""Self-Vision (He et al., Photonics Research 2023): a tiny 3D network trained zero-shot on the input.

Two modes (``axes``):

``z`` (isotropic restoration; default)
    The stack is upsampled along z only. The pairs come from the lateral axes, where the stack
    has its full resolution: a 3D crop is interpolated linearly along z onto the lateral pixel
    grid, one lateral axis (y or x, at random) becomes the network's "z" axis, is blurred by a
    Gaussian of ``blur_sigma`` pixels and sampled every ``F`` pixels (the network input); the
    same crop sampled every ``F / r`` pixels is the target (``r = ceil(F)``). ``blur_sigma``
    (the axial blur beyond the lateral one) is the stack's degradation model's
    (:mod:`isoapp.physics.degradation`: estimated from the stack, noise-aware, or from the user's PSF).
    The z axis of the stack's own data therefore sets the degradation, and its lateral
    structure sets the target.
``zyx`` (the seed's laterally and axially undersampled scans)
    Zero-shot super-resolution in all axes: crops of the stack are blurred by ``blur_sigma``
    (default 0: point sampling, as in a sparse scan) and sampled every ``F`` voxels along every
    axis; the crop itself (every ``F / r`` voxels) is the target. The output grid grows by ``F``
    in every axis and all three voxel sizes are divided by ``F``.

Augmentation is applied to the clean crop before the synthetic degradation, so it commutes with
it: flips along every axis and transpositions that keep the degraded axes (z mode: the two
non-degraded axes of the network may be swapped; zyx mode: y and x may be swapped).

Inference runs the network over the whole volume in one pass when the activation memory is
below a quarter of the free memory, else through :func:`isoapp.training.tiling.predict_tiled`;
an optional geometric self-ensemble averages the 8 (or 4) symmetries of the lateral plane;
iterative back-projection then makes the estimate consistent with the input:
``Y <- Y + step * upsample(X - subsample(blur(Y)))``, at most ``back_projection_iters`` times and
stopping once the RMS residual reaches the noise level of the stack's noise model, since
fitting the noise only adds it back. Training
uses a fixed validation batch drawn from the same stack (a convergence monitor). In z mode the
held-out check (:mod:`isoapp.quality.heldout`) holds one slab of lateral planes out of every crop, then
degrades it along y and x as the pairs are made and restores it as a stack. Non-integer factors: the network
upsamples by ``ceil(F)``; its output (position ``j / ceil(F)``) is interpolated linearly onto the
restore grid (positions ``k / F``).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as nnf
from pydantic import BaseModel, ConfigDict, Field

from ..physics.degradation import estimate_axial_sigma, estimate_noise
from ..physics.forward import output_length, sample_along
from ..quality.heldout import check_slab
from ..training.context import RunContext
from ..training.events import ProgressEvent
from ..training.tiling import predict_tiled
from ..training.trainer import make_optimizer, make_scheduler, supervised_fns, train_loop
from .base import Method, TimeModel, register
from .nets.selfvision import SelfVisionNet, linear_upsample
from .selfvision_pairs import PairMaker, back_project, degrade_along

log = logging.getLogger(__name__)

__all__ = ["PairMaker", "SelfVision", "SelfVisionParams", "back_project", "degrade_along"]

MEMORY_SHARE = 0.25  # whole-volume inference when activations take less than this share of free memory


class SelfVisionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    axes: Literal["z", "zyx"] = "z"
    upsampler: Literal["subpixel", "nearest_conv"] = "subpixel"
    n_features: int = Field(16, ge=4, le=64, description="extraction/expansion channels")
    n_shrink: int = Field(8, ge=2, le=64, description="channels of the middle layers")
    n_middle: int = Field(4, ge=1, le=16, description="number of 3x3x3 middle layers")
    groups: int = Field(1, ge=1, le=16, description="groups of the middle convolutions")
    shrink_kernel: Literal[1, 3] = 1
    up_kernel: Literal[1, 3] = 3
    residual: bool = True
    loss: Literal["l1", "l2"] = "l1"
    blur_sigma: float | None = Field(None, ge=0, le=30, description="extra Gaussian sigma (output-grid px) "
                                     "before subsampling; None: estimated from z (z mode), 0 (zyx mode)")
    self_ensemble: bool = False
    ensemble_size: Literal[4, 8] = 8
    back_projection_iters: int = Field(5, ge=0, le=100, description="most back-projection iterations")
    back_projection_step: float = Field(1.0, gt=0, le=2)
    back_projection_stop: Literal["noise", "none"] = Field(
        "noise", description="stop when the residual reaches the estimated noise level, or never")
    tile: int | None = Field(None, ge=16, description="tile edge for inference; None: automatic")


# ---------------------------------------------------------------------------- the method
def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


@register
class SelfVision(Method):
    """Self-Vision: a tiny FSRCNN-like 3D network trained zero-shot on the stack itself."""

    name = "selfvision"
    description = "Self-Vision: lightweight zero-shot 3D super-resolution (axial or all axes)"
    Params = SelfVisionParams
    label = "Self-Vision (3D, zero-shot, light)"
    dims = 3
    heldout_check = True  # z mode: on a held-out slab, degraded along a lateral axis as its pairs are
    heldout_slab = True
    options = ("axes",)
    menu_rank = 25
    bench_rank = 6
    time_model = TimeModel(s_per_step=0.08, s_per_voxel=5.5e-7, width_param="n_shrink")
    presets = {
        "fast": {"train": {"steps": 200, "batch_size": 4, "patch_size": 32, "lr": 3e-3, "val_every": 50,
                           "checkpoint_every": 50, "preview_every": 50, "warmup_steps": 10},
                 "params": {"n_shrink": 8, "n_middle": 3},
                 "note": "Self-Vision's network at a small size; its blur is the stack's estimated axial blur and "
                         "its inputs carry the stack's noise (the paper assumes a known degradation)"},
        "balanced": {"train": {"steps": 1500, "batch_size": 8, "patch_size": 48, "lr": 1e-3, "warmup_steps": 50},
                     "params": {"n_shrink": 12, "n_middle": 4, "self_ensemble": True}},
        "quality": {"train": {"steps": 6000, "batch_size": 16, "patch_size": 64, "lr": 1e-3, "warmup_steps": 100},
                    "params": {"n_shrink": 12, "n_middle": 6, "groups": 2, "shrink_kernel": 3,
                               "self_ensemble": True}},
    }

    def __init__(self, config, psf=None, degradation=None) -> None:
        super().__init__(config, psf, degradation)
        p = self.params
        r = math.ceil(self.factor - 1e-9)
        self.scale = (r, 1, 1) if p.axes == "z" else (r, r, r)
        self.nets = {"net": SelfVisionNet(self.scale, n_features=p.n_features, n_shrink=p.n_shrink,
                                          n_middle=p.n_middle, groups=p.groups, shrink_kernel=p.shrink_kernel,
                                          upsampler=p.upsampler, up_kernel=p.up_kernel, residual=p.residual)}
        self.sigma: float | None = p.blur_sigma if p.blur_sigma is not None else (0.0 if p.axes == "zyx" else None)
        self._fit_info: dict[str, Any] = {}
        log.info("selfvision (%s axes, scale %s): %d parameters", p.axes, self.scale, self.parameter_count())

    @property
    def net(self) -> SelfVisionNet:
        return self.nets["net"]

    @property
    def deg_axes(self) -> tuple[int, ...]:
        return (0,) if self.params.axes == "z" else (0, 1, 2)

    # ---------------------------------------------------------------- grid
    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(output_length(n, self.factor) if ax in self.deg_axes else n for ax, n in enumerate(shape))

    def output_voxel_size(self, voxel_size: tuple[float, float, float]) -> tuple[float, float, float]:
        return tuple(v / self.factor if ax in self.deg_axes else v for ax, v in enumerate(voxel_size))

    # ---------------------------------------------------------------- state
    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.sigma is None else {"blur_sigma": torch.tensor(float(self.sigma))}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        if "blur_sigma" in state and self.params.blur_sigma is None:
            self.sigma = float(state["blur_sigma"])

    def report(self) -> dict[str, Any]:
        return {"parameters": self.parameter_count(), "axes": self.params.axes, "scale": list(self.scale),
                "blur_sigma_px": None if self.sigma is None else round(float(self.sigma), 3),
                "halo": self.net.halo, **self._fit_info}

    def _ensure_sigma(self, vol: np.ndarray) -> float:
        if self.sigma is None:
            self.sigma = (self.degradation.axial_sigma_px if self.degradation is not None
                          else estimate_axial_sigma(vol, self.factor))
            log.info("selfvision: estimated axial blur sigma %.2f lateral px (beyond the lateral blur)", self.sigma)
        return self.sigma

    def _noise_std(self, vol: np.ndarray) -> float:
        """RMS noise of the stack, from its noise model (estimated here when the run gave none)."""
        d = self.degradation
        gain, offset = (d.noise_gain, d.noise_offset) if d is not None else estimate_noise(vol)
        return float(np.sqrt(max(float(np.mean(gain * np.clip(vol, 0, None) + offset)), 0.0)))

    # ---------------------------------------------------------------- held-out check
    def heldout_planes(self, vol: np.ndarray) -> tuple[int, ...]:
        if self.params.axes == "zyx":  # the lateral planes are undersampled too: nothing sharp to hold out
            log.info("selfvision: no held-out check in zyx mode (no lateral plane is sharp)")
            return ()
        return super().heldout_planes(vol)

    def train_depth(self, shape: tuple[int, int, int]) -> int:
        return PairMaker.z_extent(shape, self.factor, self.config.train.patch_size)[1]

    def restore_sampled(self, samples: np.ndarray, ctx: RunContext) -> np.ndarray | None:
        return None if self.params.axes == "zyx" else super().restore_sampled(samples, ctx)

    # ---------------------------------------------------------------- training
    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        cfg = self.config.train
        sigma = self._ensure_sigma(vol)
        rng = ctx.rng
        check_slab(ctx.heldout, self.name)
        maker = PairMaker(vol, self.factor, self.params.axes, sigma, cfg.patch_size, rng, cfg.foreground_fraction,
                          noise=self.degradation, exclude=ctx.heldout)
        val_maker = PairMaker(vol, self.factor, self.params.axes, sigma, cfg.patch_size,
                              np.random.default_rng(ctx.seed + 7), cfg.foreground_fraction, noise=self.degradation,
                              exclude=ctx.heldout)
        val = val_maker.batch(min(16, 2 * cfg.batch_size), ctx.device)  # fixed batch: tracks convergence
        net = self.net.to(ctx.device)
        opt = make_optimizer(net.parameters(), cfg)
        sched = make_scheduler(opt, cfg, cfg.steps)
        loss_fn = nnf.l1_loss if self.params.loss == "l1" else nnf.mse_loss
        with torch.no_grad():
            base_loss = float(loss_fn(self._interp(val[0]), val[1]))

        scaler = ctx.grad_scaler()
        step, validate = supervised_fns(ctx, net, opt, sched, loss_fn, lambda: maker.batch(cfg.batch_size, ctx.device),
                                        val, scaler)

        def preview() -> dict[str, np.ndarray]:
            return self._preview(vol, ctx)

        res = train_loop(ctx, stage="selfvision", steps=cfg.steps, step_fn=step,
                         state={"net": net, "opt": opt, "sched": sched, "scaler": scaler, "rng": rng}, cfg=cfg,
                         val_fn=validate, preview_fn=preview)
        vals = [h["val_loss"] for h in res.history if "val_loss" in h]
        self._fit_info = {"train_seconds": round(res.seconds, 2), "steps": res.steps_done,
                          "s_per_step": round(res.seconds / max(res.steps_done - res.resumed_from, 1), 4),
                          "val_loss_interp": round(base_loss, 5),
                          "val_loss_final": round(vals[-1], 5) if vals else None}

    def _interp(self, x: torch.Tensor) -> torch.Tensor:
        for dim, r in enumerate(self.scale):
            x = linear_upsample(x, r, dim + 2)
        return x

    # ---------------------------------------------------------------- prediction
    def _tile(self, shape: tuple[int, ...], ctx: RunContext) -> tuple[int, int, int] | None:
        p = self.params
        bpv = 4 * (4 * p.n_features + 3 * math.prod(self.scale) + 2 * p.n_shrink + 8)  # bytes per input voxel
        if p.tile is not None:
            return tuple(min(p.tile, n) for n in shape)
        budget = MEMORY_SHARE * _free_memory(ctx.device)
        if math.prod(shape) * bpv <= budget:
            return None
        nz = shape[0]
        edge = int(math.sqrt(budget / (bpv * nz))) if nz <= 64 else int((budget / bpv) ** (1 / 3))
        edge = max(edge, 2 * self.net.halo + 16)
        return (min(nz, edge) if nz > 64 else nz, min(edge, shape[1]), min(edge, shape[2]))

    def _net_pass(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        """The network's output, cut to the input's extent (sample ``j`` at position ``j / r``)."""
        net = self.net.to(ctx.device).eval()
        tile = self._tile(vol.shape, ctx)
        out = predict_tiled(net, vol, ndim=3, tile=tile, halo=net.halo + 2, scale=self.scale, device=ctx.device,
                            amp=ctx.use_amp, should_stop=ctx.should_stop)
        return out[tuple(slice(0, r * (n - 1) + 1) for r, n in zip(self.scale, vol.shape, strict=True))]

    def _to_grid(self, y: np.ndarray, in_shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
        """Resample the network grid (step ``1 / r``) onto the restore grid (step ``1 / F``)."""
        F = self.factor
        for ax in axes:
            r = self.scale[ax]
            if abs(r - F) < 1e-9:
                continue
            pos = np.arange(output_length(in_shape[ax], F)) * (r / F)
            y = sample_along(y, pos, axis=ax, order=1)
        return y

    def _transforms(self) -> list[tuple[int, bool]]:
        if not self.params.self_ensemble:
            return [(0, False)]
        ks = [(k, False) for k in range(4)]
        return ks + [(k, True) for k in range(4)] if self.params.ensemble_size == 8 else ks

    def predict(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        sigma = self._ensure_sigma(vol) if self.params.back_projection_iters else (self.sigma or 0.0)
        tfs = self._transforms()
        n_steps = len(tfs) + (1 if self.params.back_projection_iters else 0)
        acc = None
        for i, (k, flip) in enumerate(tfs):
            x = np.rot90(vol, k, axes=(1, 2))
            x = np.ascontiguousarray(x[:, :, ::-1] if flip else x)
            y = self._net_pass(x, ctx)
            if flip:
                y = y[:, :, ::-1]
            y = np.rot90(y, -k, axes=(1, 2))
            acc = y.astype(np.float32) if acc is None else acc + y
            ctx.send(ProgressEvent("restore", i + 1, n_steps))
        out = self._to_grid(acc / len(tfs), vol.shape, self.deg_axes)
        out = np.ascontiguousarray(out, np.float32)
        if self.params.back_projection_iters:
            ctx.check_stop()
            noise = self._noise_std(vol) if self.params.back_projection_stop == "noise" else 0.0
            out, done = back_project(out, vol, self.factor, sigma, self.deg_axes, self.params.back_projection_iters,
                                     self.params.back_projection_step, noise)
            self._fit_info["back_projection_done"] = done
            log.info("selfvision: %d back-projection iterations (noise level %.3g)", done, noise)
            ctx.send(ProgressEvent("restore", n_steps, n_steps))
        return out

    def _preview(self, vol: np.ndarray, ctx: RunContext) -> dict[str, np.ndarray]:
        nz, ny, nx = vol.shape
        cy, cx = ctx.preview_yx(ny, nx)
        h = self.net.halo + 1
        planes = {}
        for name, ax, c in (("xz", 1, cy), ("yz", 2, cx)):
            lo, hi = max(0, c - h), min(vol.shape[ax], c + h + 1)
            slab = np.ascontiguousarray(np.take(vol, np.arange(lo, hi), axis=ax))
            y = self._to_grid(self._net_pass(slab, ctx), slab.shape, self.deg_axes)
            idx = int(round((c - lo) * self.factor)) if ax in self.deg_axes else c - lo
            idx = min(idx, y.shape[ax] - 1)
            planes[name] = np.take(y, idx, axis=ax)
        return planes
