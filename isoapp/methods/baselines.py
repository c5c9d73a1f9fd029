"""Baselines: linear and cubic interpolation along z, and Richardson–Lucy deconvolution."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import Cancelled
from ..physics.forward import upsample
from ..physics.psf import psf_core_fwhm, psf_on_input_grid
from ..training.context import RunContext
from ..training.events import ProgressEvent
from .base import Method, TimeModel, register

log = logging.getLogger(__name__)


@register
class Linear(Method):
    """Linear interpolation along z onto the output grid."""

    name = "linear"
    description = "linear interpolation along z (baseline)"
    trainable = False
    heldout_check = True
    label = "Linear interpolation"
    menu_rank = 90
    bench_rank = 0
    block_capable = True
    exportable = True  # z interpolation only (export_net None)
    time_model = TimeModel(s_per_voxel=2e-9)
    order = 1

    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        """Nothing to learn."""

    def predict(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        return upsample(vol, self.factor, axis=0, order=self.order)

    def block_geometry(self):
        """Linear: the two neighbouring planes. Cubic: the spline's prefilter decays as 0.268^n, so
        16 planes bring a block within 1e-9 of the whole-volume result."""
        from ..training.tiling import BlockGeometry

        return BlockGeometry(halo_z=1 if self.order == 1 else 16, halo_yx=0)

    def restore_sampled(self, samples: np.ndarray, ctx: RunContext) -> np.ndarray:
        return upsample(samples, self.factor, axis=1, order=self.order)


@register
class Cubic(Linear):
    """Cubic-spline interpolation along z onto the output grid."""

    name = "cubic"
    description = "cubic-spline interpolation along z (baseline)"
    label = "Cubic-spline interpolation"
    menu_rank = 91
    bench_rank = 1
    exportable = False  # a spline prefilter along the whole z axis, which no bioimage.io consumer applies
    time_model = TimeModel(s_per_voxel=2e-8)
    order = 3


class RLParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    iterations: int = Field(20, ge=1, le=1000)
    interpolation: Literal["linear", "cubic"] = "linear"


def _centered_otf(psf: np.ndarray, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """rFFT of ``psf`` zero-padded to ``shape`` with its centre moved to the origin."""
    pad = np.zeros(shape, np.float32)
    sl = tuple(slice(0, s) for s in psf.shape)
    pad[sl] = psf
    pad = np.roll(pad, [-(s // 2) for s in psf.shape], axis=tuple(range(psf.ndim)))
    return torch.fft.rfftn(torch.from_numpy(pad).to(device))


def richardson_lucy(img: np.ndarray, psf: np.ndarray, iterations: int, ctx: RunContext | None = None,
                    eps: float = 1e-6) -> np.ndarray:
    """Richardson–Lucy deconvolution in torch (FFT; runs on the GPU when ``ctx.device`` is CUDA).

    The image is reflect-padded by half the PSF so the circular FFT does not wrap edges.
    """
    device = ctx.device if ctx is not None else torch.device("cpu")
    pads = [(min(s // 2, n - 1), min(s // 2, n - 1)) for s, n in zip(psf.shape, img.shape, strict=True)]
    x = np.pad(np.clip(img, 0, None).astype(np.float32), pads, mode="reflect")
    obs = torch.from_numpy(x).to(device)
    if any(k > n for k, n in zip(psf.shape, obs.shape, strict=True)):  # a PSF wider than the padded stack: its core
        cut = tuple(slice((k - min(k, n - 1 + n % 2)) // 2, (k - min(k, n - 1 + n % 2)) // 2 + min(k, n - 1 + n % 2))
                    for k, n in zip(psf.shape, obs.shape, strict=True))
        psf = psf[cut] / psf[cut].sum()
    otf = _centered_otf(psf.astype(np.float32), obs.shape, device)
    est = torch.full_like(obs, float(obs.mean()) + eps)
    for i in range(iterations):
        if ctx is not None:
            if ctx.should_stop():
                raise Cancelled("Richardson–Lucy stopped on request")
            ctx.send(ProgressEvent("deconvolve", i + 1, iterations))
        conv = torch.fft.irfftn(torch.fft.rfftn(est) * otf, s=obs.shape)
        ratio = obs / conv.clamp_min(eps)
        est = est * torch.fft.irfftn(torch.fft.rfftn(ratio) * otf.conj(), s=obs.shape)
        est = est.clamp_min(0)
    crop = tuple(slice(a, a + n) for (a, _), n in zip(pads, img.shape, strict=True))
    return est.cpu().numpy()[crop]


@register
class RichardsonLucy(Method):
    """Richardson–Lucy deconvolution with the run's PSF on the input grid, then interpolation."""

    name = "rl"
    description = "Richardson–Lucy deconvolution with the PSF, then interpolation (baseline)"
    Params = RLParams
    trainable = False
    uses_psf = True
    heldout_check = True
    label = "Richardson–Lucy deconvolution"
    menu_rank = 80
    bench_rank = 2
    time_model = TimeModel(s_per_voxel=1.2e-7)
    presets = {"fast": {"params": {"iterations": 20}}, "balanced": {"params": {"iterations": 40}},
               "quality": {"params": {"iterations": 80}}}

    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        """Deconvolution needs no training."""

    def predict(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        return self._deconvolve_then_interpolate(vol, psf_on_input_grid(self.psf, self.factor), 0, ctx)

    def restore_sampled(self, samples: np.ndarray, ctx: RunContext) -> np.ndarray | None:
        """The same on ``(N, m, W)`` planes, along rows, for a z-only PSF; None for a PSF with lateral extent.

        For a z-only PSF (the stack's estimated blur) this is exactly what :meth:`predict` does to each
        xz/yz column. A PSF with lateral extent (the user's) also makes :meth:`predict` deconvolve
        laterally and remove the defocus haze of other planes; held-out lateral planes cannot show that,
        since their own reference carries both, so there is no check then.
        """
        if psf_core_fwhm(self.psf)[1] >= 1.0:
            log.info("held-out check not run for rl with this PSF: it deconvolves laterally (and removes the "
                     "haze of other planes), which held-out lateral planes cannot show")
            return None
        axial = psf_on_input_grid(self.psf, self.factor).sum(axis=(1, 2))
        return self._deconvolve_then_interpolate(samples, (axial / axial.sum())[None, :, None], 1, ctx)

    def _deconvolve_then_interpolate(self, arr: np.ndarray, psf: np.ndarray, axis: int,
                                     ctx: RunContext) -> np.ndarray:
        deconv = richardson_lucy(arr, psf, self.params.iterations, ctx)
        order = 1 if self.params.interpolation == "linear" else 3
        return upsample(deconv, self.factor, axis=axis, order=order)
