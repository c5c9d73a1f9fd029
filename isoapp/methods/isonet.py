"""IsoNet / CARE-isotropic (Weigert et al. 2017; CSBDeep's isotropic reconstruction).

Training pairs come from the lateral planes of the stack itself: each plane is blurred with the
PSF rotated into the lateral plane (``full``) or with the split PSF (``split``: the part of the
rotated PSF not already present laterally), subsampled along that axis by the anisotropy factor,
given the noise the acquisition adds after the blur, and interpolated back (the stack's
degradation model, :mod:`isoapp.physics.degradation`, through the shared pair source :mod:`isoapp.training.pairs`;
with no PSF given, the kernel is the estimated axial blur). A residual U-Net (IsoNet-2) or an SRCNN-like net (IsoNet-1) learns to undo
it. At prediction time the stack is interpolated along z, every xz and yz plane is restored and
the two results are fused (geometric mean by default).
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as nnf
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ModelError
from ..physics.forward import upsample
from ..physics.kernels import isonet_kernels
from ..training.context import RunContext
from ..training.device import to_device
from ..training.pairs import LateralPairs, training_planes
from ..training.trainer import make_optimizer, make_scheduler, supervised_fns, train_loop
from .base import TimeModel, register
from .nets import UNet
from .nets.blocks import SRCNN
from .planewise import PlaneWiseMethod

log = logging.getLogger(__name__)


class IsoNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: Literal["isonet2", "isonet1"] = "isonet2"
    psf_mode: Literal["full", "split"] = "split"
    depth: int = Field(2, ge=1, le=4)
    n_filters: int = Field(32, ge=4, le=128)
    fusion: Literal["geometric", "arithmetic"] = "geometric"
    loss: Literal["l1", "l2"] = "l1"
    tile: int | None = Field(None, ge=32, description="plane tile edge for prediction; None = whole planes")


@register
class IsoNet(PlaneWiseMethod):
    """IsoNet-1/2 trained on the stack's own lateral planes."""

    name = "isonet"
    inference_key = "net"
    description = "IsoNet / CARE-isotropic: PSF-based self-supervision from lateral planes"
    Params = IsoNetParams
    uses_psf = True
    label = "IsoNet (CARE isotropic)"
    menu_rank = 10
    napari_rank = 1
    bench_rank = 3
    exportable, export_net = True, "net"
    time_model = TimeModel(s_per_step=0.1, s_per_voxel=1.3e-6, width_param="n_filters")
    presets = {
        "fast": {"train": {"steps": 600, "batch_size": 8, "patch_size": 64, "lr": 1e-3, "val_every": 100,
                           "checkpoint_every": 100, "preview_every": 50},
                 "params": {"n_filters": 16, "depth": 2},
                 "note": "IsoNet-2 as in Weigert et al. 2017, but a smaller U-Net (16 filters) and 600 steps for a "
                         "laptop CPU; without a PSF the blur is estimated from the stack, and training inputs carry "
                         "the stack's noise",
                 "provenance": "benchmarks/results/presets.md#isonet-fast"},
        "balanced": {"train": {"steps": 2000, "batch_size": 16, "patch_size": 96, "lr": 4e-4},
                     "params": {"n_filters": 32, "depth": 2},
                     "note": "IsoNet-2 at CSBDeep's default width, fewer steps; estimated blur and noise-matched "
                             "pairs as in fast"},
        "quality": {"train": {"steps": 10000, "batch_size": 32, "patch_size": 128, "lr": 4e-4},
                    "params": {"n_filters": 64, "depth": 3},
                    "note": "IsoNet-2 at the paper's scale; estimated blur and noise-matched pairs as in fast"},
    }

    def __init__(self, config, psf=None, degradation=None) -> None:
        super().__init__(config, psf, degradation)
        p = self.params
        net = SRCNN(2) if p.arch == "isonet1" else UNet(2, depth=p.depth, n_filters=p.n_filters, residual=True)
        self.nets = {"net": net}

    @property
    def net(self) -> torch.nn.Module:
        return self.nets["net"]

    def kernel(self) -> np.ndarray:
        """The 2D degradation kernel, its axial extent along rows (axis 0)."""
        if self.psf is None:
            raise ModelError("IsoNet needs a PSF to train (give --psf FILE, --psf-fwhm Z Y X or optics)")
        return isonet_kernels(self.psf, mode=self.params.psf_mode, axis="y")

    # ---------------------------------------------------------------- training
    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        cfg = self.config.train
        F = self.factor
        rng = ctx.rng
        z_idx = training_planes(vol.shape[0], ctx.heldout)
        planes = np.ascontiguousarray(vol[z_idx], np.float32)
        margin = int(math.ceil(F))
        P = min(cfg.patch_size, *[s - 2 * margin for s in planes.shape[1:]])
        P = max(8, P // 8 * 8)
        n_val = max(1, len(z_idx) // 10) if len(z_idx) >= 5 else 0
        k = self.kernel()
        pairs = LateralPairs(planes, F, P, rng, kernel=k, degradation=self.degradation,
                             foreground_fraction=cfg.foreground_fraction, index_range=(0, len(z_idx) - n_val))

        def to_t(xy: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
            return tuple(to_device(torch.from_numpy(a).unsqueeze(1), ctx.device) for a in xy)

        val = None
        if n_val:
            vpairs = pairs.subset((len(z_idx) - n_val, len(z_idx)), np.random.default_rng(ctx.seed + 1),
                                  foreground_fraction=cfg.foreground_fraction)
            val = to_t(vpairs.batch(min(32, 4 * cfg.batch_size), np.random.default_rng(ctx.seed + 2)))

        net = self.net.to(ctx.device)
        opt = make_optimizer(net.parameters(), cfg)
        sched = make_scheduler(opt, cfg, cfg.steps)
        loss_fn = nnf.l1_loss if self.params.loss == "l1" else nnf.mse_loss

        scaler = ctx.grad_scaler()
        step, validate = supervised_fns(ctx, net, opt, sched, loss_fn,
                                        lambda: to_t(pairs.batch(cfg.batch_size, rng)), val, scaler)

        def preview() -> dict[str, np.ndarray]:
            net.eval()
            cy, cx = ctx.preview_yx(*vol.shape[1:])  # interpolate only the two planes shown
            return {"xz": self._restore_planes(upsample(vol[:, cy, :], F, axis=0, order=1)[None], ctx)[0],
                    "yz": self._restore_planes(upsample(vol[:, :, cx], F, axis=0, order=1)[None], ctx)[0]}

        train_loop(ctx, stage="isonet", steps=cfg.steps, step_fn=step,
                   state={"net": net, "opt": opt, "sched": sched, "scaler": scaler, "rng": rng}, cfg=cfg,
                   val_fn=validate, preview_fn=preview)
        self._halo = None
