"""Isotropic deconvolution consistent with the acquisition: Richardson–Lucy through the sampled 3D forward model.

A widefield stack's lateral planes carry the same out-of-focus haze as the rest of the stack, so
a network that learns only from them cannot learn to remove it (docs/QUALITY.md). This method
puts the microscope's 3D PSF into the data term instead. The restoration ``u`` lives on the
output grid (z step ``dz / F``); the model of the recorded planes is

    y ≈ S(H u),

with ``H`` the 3D convolution with the PSF (resampled to the output grid) and ``S`` the sampling at
the acquired plane positions ``i F`` (linear interpolation between output planes for a
non-integer ``F``). ``u`` is the maximum-likelihood estimate under Poisson noise found by the
Richardson–Lucy iteration for a general linear forward model (Richardson 1972, JOSA 62:55;
Lucy 1974, AJ 79:745; Shepp & Vardi 1982, IEEE TMI 1:113):

    u ← u · Hᵀ Sᵀ (y / S H u) / Hᵀ Sᵀ 1.

* **Noise.** The stack's Poisson–Gaussian model (``var = g x + o``, normalised units, estimated
  by :mod:`isoapp.physics.degradation`) enters as Snyder's shifted Poisson approximation: ``y + o / g``
  is treated as Poisson with mean ``S H u + o / g`` (Snyder, Hammoud & White 1993, JOSA A 10:1014).
  The shift also sets the floor that ``u`` cannot go below (the zero-photon level).
* **Borders.** ``u`` extends half a PSF beyond the recorded field on every side, and the update is
  normalised by ``Hᵀ Sᵀ 1``, so light from outside the field explains the haze at the edges instead
  of piling up as rims (Bertero & Boccacci 2005, A&A 437:369). Only the field is returned.
* **Along z.** The recorded planes are ``F`` output planes apart, so they carry no axial detail finer
  than that, and free voxels let RL pile intensity onto the recorded positions (stripes at the plane
  spacing in xz and yz, seen on the widefield phantoms). The estimate is therefore ``u = B w``, with
  ``B`` the acquisition's linear-interpolation kernel along z (a triangle of half-width ``F``, whose
  zeros fall on the stripes' frequency), and RL runs on ``w`` through ``S H B``. On the widefield
  phantoms with the generator's PSF this gained +0.02 to +0.25 dB over free voxels and removed the
  stripes (benchmarks/results/deconv.md).
* **When to stop.** RL fits the noise if run long. A random tenth of the recorded voxels is held out
  of the data term (weight 0) and the iteration keeps the estimate that predicts them best (Poisson
  deviance through the same model), stopping when that has not improved for
  :data:`PATIENCE` iterations: cross-validation on the stack's own voxels, needing no noise level
  (the PSF spreads every voxel over its neighbours, so held-out voxels are predicted, not fitted).
  The discrepancy principle (stop at ``chi2/N <= 1``, Morozov) is the alternative
  (``stop="discrepancy"``); it depends on the estimated noise level, and a noise estimate 5 % too high
  stopped it after 7 instead of 20 iterations on a widefield phantom (benchmarks/results/deconv.md).
  ``chi2/N`` of the recorded planes is reported either way.
* **PSF extent.** The PSF is used as given, whole. (Choosing its axial extent by ``chi2/N`` after a
  fixed number of iterations was tried and dropped: a shorter PSF converges faster, so it always won.)

Unlike a network trained on pairs (ZS-DeconvNet, Qiao et al. 2024; RLN, Li et al. 2022), it
invents nothing the forward model does not need: every voxel is explained by the recorded planes
through the PSF. The data term is exactly theirs; the prior is early stopping. The recorded planes
are the only data, so the lateral planes supervise the estimate through the same data term.

On CUDA the FFTs run in float32 (cuFFT's half precision needs power-of-two sizes and loses the
haze's dynamic range); mixed precision is for the networks.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import Cancelled, ConfigError
from ..physics.forward import output_length, sample_along
from ..training.context import RunContext
from ..training.events import ProgressEvent
from .base import Method, TimeModel, register

log = logging.getLogger(__name__)

# The constants below were set before any quality run, not tuned on the benchmark cases.
#: share of the recorded voxels held out of the data term to decide when to stop (few enough to cost
#: little data, about 30 000 voxels of a 33 x 96 x 96 stack: enough for a smooth deviance curve)
HOLDOUT = 0.1
#: iterations without a better held-out deviance before the iteration stops
PATIENCE = 8
#: the update is applied only where the back-projected weight exceeds this share of its maximum (the
#: padding's far corners, which no recorded voxel sees, keep their start value)
NORM_FLOOR = 0.05
#: the chi2/N report's noise variance never falls below this share of its median (guards a fitted offset
#: near 0; the consistency report's floor, :data:`isoapp.quality.consistency.VAR_FLOOR`, is 0.25)
VAR_FLOOR = 0.01
#: the lateral radius kept holds this share of the kept planes' energy
LATERAL_ENERGY = 0.999


class DeconvParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_iterations: int = Field(60, ge=1, le=2000, description="most Richardson–Lucy iterations")
    basis: Literal["acquisition", "none"] = Field(
        "acquisition", description="the estimate along z: the recorded planes' linear-interpolation kernel times "
        "free weights (no stripes at the plane spacing), or free voxels")
    stop: Literal["validation", "discrepancy"] = Field(
        "validation", description="stop where held-out voxels are predicted best, or at chi2/N <= chi2_target")
    chi2_target: float = Field(1.0, gt=0.0, le=10.0, description="with stop=discrepancy: chi2/N to stop at")
    seed: int = Field(0, description="seed of the held-out voxels")


# ----------------------------------------------------------------------------- the PSF on the output grid
def psf_on_output_grid(psf_iso: np.ndarray, z_step: float) -> np.ndarray:
    """Resample an isotropic-grid PSF along z to planes ``z_step`` lateral pixels apart (sum 1, odd)."""
    a = np.asarray(psf_iso, np.float32)
    if abs(z_step - 1.0) < 1e-3:
        return a / a.sum()
    c = a.shape[0] // 2
    k = int(math.floor(c / z_step + 1e-9))
    out = np.clip(sample_along(a, c + np.arange(-k, k + 1) * z_step, axis=0, order=1), 0, None)
    return (out / out.sum()).astype(np.float32)


def truncate_psf(psf: np.ndarray, half_z: int) -> np.ndarray:
    """The PSF's central ``2 half_z + 1`` planes, cropped laterally to the radius holding 99.9 % of them."""
    c = psf.shape[0] // 2
    half_z = int(min(max(half_z, 1), c))
    a = psf[c - half_z:c + half_z + 1]
    prof = a.sum(axis=0)
    cy, cx = prof.shape[0] // 2, prof.shape[1] // 2
    yy, xx = np.ogrid[:prof.shape[0], :prof.shape[1]]
    r = np.maximum(np.abs(yy - cy), np.abs(xx - cx))
    cum = np.bincount(r.ravel(), prof.ravel()).cumsum()
    half_yx = int(np.searchsorted(cum, LATERAL_ENERGY * cum[-1])) + 1
    half_y, half_x = min(half_yx, cy), min(half_yx, cx)
    a = a[:, cy - half_y:cy + half_y + 1, cx - half_x:cx + half_x + 1]
    return (a / a.sum()).astype(np.float32)


# ----------------------------------------------------------------------------- the solver
class SampledModel:
    """``S H`` on a field padded by half the PSF: convolution by FFT, sampling at positions ``i F``."""

    def __init__(self, n_in: int, shape_yx: tuple[int, int], factor: float, psf: np.ndarray,
                 device: torch.device) -> None:
        self.hz, self.hy, self.hx = (s // 2 for s in psf.shape)
        self.n_out = output_length(n_in, factor)
        self.ny, self.nx = shape_yx
        self.shape = (self.n_out + 2 * self.hz, self.ny + 2 * self.hy, self.nx + 2 * self.hx)
        self.device = device
        pad = np.zeros(self.shape, np.float32)
        pad[:psf.shape[0], :psf.shape[1], :psf.shape[2]] = psf
        pad = np.roll(pad, [-(s // 2) for s in psf.shape], axis=(0, 1, 2))
        self.otf = torch.fft.rfftn(torch.from_numpy(pad).to(device))
        pos = self.hz + np.arange(n_in, dtype=np.float64) * float(factor)
        i0 = np.floor(pos + 1e-6).astype(np.int64)
        w = np.clip(pos - i0, 0.0, 1.0)
        i1 = np.minimum(i0 + 1, self.shape[0] - 1)
        self.i0 = torch.from_numpy(i0).to(device)
        self.i1 = torch.from_numpy(i1).to(device)
        self.w = torch.from_numpy(w.astype(np.float32)).to(device)[:, None, None]
        self.field = (slice(self.hy, self.hy + self.ny), slice(self.hx, self.hx + self.nx))

    def conv(self, u: torch.Tensor, adjoint: bool = False) -> torch.Tensor:
        otf = self.otf.conj() if adjoint else self.otf
        return torch.fft.irfftn(torch.fft.rfftn(u) * otf, s=self.shape)

    def sample(self, v: torch.Tensor) -> torch.Tensor:
        """Planes at the acquired positions, inside the recorded field: ``(n_in, ny, nx)``."""
        a, b = v[self.i0][(slice(None),) + self.field], v[self.i1][(slice(None),) + self.field]
        return a + self.w * (b - a)

    def sample_adjoint(self, r: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=r.dtype, device=r.device)
        view = out[(slice(None),) + self.field]
        view.index_add_(0, self.i0, (1 - self.w) * r)
        view.index_add_(0, self.i1, self.w * r)
        return out

    def crop(self, u: torch.Tensor) -> torch.Tensor:
        return u[(slice(self.hz, self.hz + self.n_out),) + self.field]


def noise_shift(y: np.ndarray, gain: float, offset: float) -> float:
    """Snyder's shift ``o / g`` (normalised units): ``y + shift`` has variance ``g (y + shift)``, as a Poisson count.

    Values of ``y + shift`` below 0 (read noise around the zero-photon level) are clipped to 0 by
    the caller, as in Snyder et al. With shot noise negligible (``g`` about 0), the shift is capped
    at ten times the data's range, where RL acts as a weighted least-squares fit.
    """
    lo, hi = (float(v) for v in np.percentile(y, (0.1, 99.9)))
    cap = 10.0 * max(hi - lo, 1e-6)
    if gain <= 0:
        return cap
    return float(min(offset / gain, cap))


def axial_basis(factor: float) -> np.ndarray:
    """The acquisition's linear-interpolation kernel along z on the output grid: a triangle of half-width ``F``."""
    r = max(int(math.ceil(factor)) - 1, 0)
    k = np.clip(1.0 - np.abs(np.arange(-r, r + 1)) / float(factor), 0.0, None).astype(np.float32)
    return k / k.sum()


def _zconv(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.convolve1d(a, kernel, axis=0, mode="constant").astype(np.float32)


def sampled_rl(y: np.ndarray, psf: np.ndarray, factor: float, *, gain: float, offset: float, max_iterations: int,
               stop: str = "validation", chi2_target: float = 1.0, seed: int = 0, basis: np.ndarray | None = None,
               ctx: RunContext | None = None, stage: str = "deconvolve") -> tuple[np.ndarray, dict]:
    """Richardson–Lucy for ``y = S(H u)`` (see the module docstring); returns ``u`` on the output grid and a report.

    The report's ``model`` is ``(SampledModel, H u on the padded grid, shift)``: what the result predicts.

    Parameters
    ----------
    y
        Recorded planes (ZYX, normalised).
    psf
        3D PSF on the output grid (odd shape, sum 1).
    gain, offset
        The noise model ``var = gain x + offset`` in the units of ``y``.
    stop
        ``"validation"`` (held-out voxels), ``"discrepancy"`` (``chi2/N <= chi2_target``) or ``"none"``
        (all ``max_iterations``).
    basis
        A z kernel ``B`` (odd length, sum 1): the estimate is ``u = B w`` and RL runs on ``w`` with the
        PSF ``H B`` (RL holds for any non-negative linear model); None: ``u`` itself.
    """
    device = ctx.device if ctx is not None else torch.device("cpu")
    if basis is not None:
        r = len(basis) // 2
        psf = _zconv(np.pad(np.asarray(psf, np.float32), ((r, r), (0, 0), (0, 0))), basis)
        psf /= psf.sum()
    model = SampledModel(y.shape[0], y.shape[1:], factor, psf, device)
    shift = noise_shift(y, gain, offset)
    d = torch.from_numpy(np.clip(np.asarray(y, np.float32) + shift, 0, None)).to(device)
    weight = torch.ones_like(d)
    held = None
    if stop == "validation":
        rng = np.random.default_rng(seed)
        held = torch.from_numpy(rng.random(d.shape) < HOLDOUT).to(device)
        weight = (~held).to(d.dtype)
    norm = model.conv(model.sample_adjoint(weight), adjoint=True)
    ok = norm > NORM_FLOOR * norm.max()
    norm = norm.clamp_min(1e-12)
    u = torch.full(model.shape, float(d.mean()), device=device)
    var_floor = None
    hist: list[float] = []
    val: list[float] = []
    best, best_u = math.inf, u
    reason = "max_iterations"
    for it in range(max_iterations + 1):
        if ctx is not None and ctx.should_stop():
            raise Cancelled("deconvolution stopped on request")
        m = model.sample(model.conv(u)).clamp_min(1e-6)
        var = gain * m if gain > 0 else torch.full_like(m, max(offset, 1e-12))
        if var_floor is None:
            var_floor = max(VAR_FLOOR * float(var.median()), 1e-12)
        chi2 = float(((d - m) ** 2 / var.clamp_min(var_floor)).mean())
        hist.append(chi2)
        if held is not None:
            dev = float((m - d * torch.log(m))[held].mean())  # Poisson deviance of the held-out voxels (up to a constant)
            val.append(dev)
            if dev < best:
                best, best_u = dev, u
            elif it - int(np.argmin(val)) >= PATIENCE:
                reason = "validation"
                break
        elif stop == "discrepancy" and chi2 <= chi2_target:
            reason = "discrepancy"
            break
        if it == max_iterations:
            break
        if ctx is not None:
            ctx.send(ProgressEvent(stage, it + 1, max_iterations, extra={"chi2_per_n": chi2}))
        upd = model.conv(model.sample_adjoint(weight * d / m), adjoint=True) / norm
        u = torch.where(ok, u * upd, u).clamp_min(0)
    done = int(np.argmin(val)) if held is not None else len(hist) - 1
    if held is not None:
        u = best_u
    field = u.cpu().numpy() if basis is None else _zconv(u.cpu().numpy(), basis)
    out = (field[model.hz:model.hz + model.n_out][(slice(None),) + model.field] - shift).astype(np.float32)
    report = {"model": (model, model.conv(u).cpu().numpy(), shift), "iterations": done, "stopped": reason, "chi2_per_n": round(hist[done], 4),
              "chi2_first": round(hist[0], 4), "shift": round(shift, 5)}
    if val:
        report["heldout_deviance"] = [round(v - val[0], 6) for v in val]
    return out, report


# ----------------------------------------------------------------------------- the method
@register
class Deconv(Method):
    """Richardson–Lucy on the output grid through the sampled 3D forward model, stopped on held-out voxels."""

    name = "deconv"
    description = ("isotropic deconvolution with the 3D PSF through the acquisition model (Richardson–Lucy, "
                   "stopped where held-out recorded voxels are predicted best); for widefield stacks: give the PSF "
                   "(a bead file or the optics), or it deconvolves the estimated axial blur only")
    Params = DeconvParams
    trainable = False
    uses_psf = True
    label = "Isotropic deconvolution (3D PSF)"
    menu_rank = 30
    # measured: 47 s for 129 x 96 x 96 output voxels, widefield optics PSF (85 x 109 x 109 at 0.1 µm), 60 iterations,
    # 2 torch threads (benchmarks/results/deconv.md); one thread about 1.5x that
    time_model = TimeModel(s_per_voxel=6e-5)
    options = ("stop",)
    presets = {"fast": {"params": {"max_iterations": 60}}, "balanced": {"params": {"max_iterations": 150}},
               "quality": {"params": {"max_iterations": 400}}}

    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        """Nothing to learn: the PSF and the noise model are the model."""

    def _noise(self) -> tuple[float, float]:
        d = self.degradation
        if d is None or not d.has_noise:
            return 0.0, 0.0
        return float(d.noise_gain), float(d.noise_offset)

    def output_psf(self) -> np.ndarray:
        """The run's PSF on the output grid (z step ``dz / F``); ConfigError without one."""
        if self.psf is None:
            raise ConfigError("deconv needs a 3D PSF: give --psf FILE (a bead stack, see `isoapp psf`) or "
                              "--psf-optics widefield,na=...,wavelength=...,n=...")
        dz, dy, dx = self.config.voxel_size
        return psf_on_output_grid(self.psf, (dz / self.factor) / (0.5 * (dy + dx)))

    def model_planes(self, out: np.ndarray, positions: np.ndarray) -> np.ndarray | None:
        """``H u`` of the last deconvolution at output-grid ``positions`` when ``out`` is its result: the PSF-blurred
        field plus the light from beyond it that the deconvolution estimated (its padding), as recorded planes."""
        last = getattr(self, "_last", None)
        if last is None or last[0].shape != out.shape or not np.array_equal(last[0], out):
            return None
        model, blurred, shift = last[1:]
        pos = model.hz + np.asarray(positions, np.float64)
        planes = sample_along(blurred, pos, axis=0, order=1)
        return (planes[(slice(None),) + model.field] - shift).astype(np.float32)

    def predict(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        psf = self.output_psf()
        src = self.degradation.blur_source if self.degradation is not None else ""
        if src in ("estimated", "none") or psf.shape[1] == 1 == psf.shape[2]:
            log.warning("deconv: no 3D PSF given, so it deconvolves the stack's estimated axial blur only and removes "
                        "no widefield haze; give --psf FILE (see `isoapp psf`) or --psf-optics for that")
        gain, offset = self._noise()
        if gain <= 0 and offset <= 0 and self.params.stop == "discrepancy":
            log.warning("deconv: the stack has no noise model, so the iteration cannot stop at the noise; it runs "
                        "%d iterations", self.params.max_iterations)
        psf = truncate_psf(psf, psf.shape[0] // 2)  # laterally to 99.9 % of the energy: smaller FFTs
        out, rep = sampled_rl(vol, psf, self.factor, gain=gain, offset=offset,
                              max_iterations=self.params.max_iterations, stop=self.params.stop,
                              chi2_target=self.params.chi2_target, seed=self.params.seed, ctx=ctx,
                              basis=axial_basis(self.factor) if self.params.basis == "acquisition" else None)
        self._last = (out, *rep.pop("model"))
        self._report = {**rep, "psf_shape": list(psf.shape)}
        log.info("deconv: %d iterations, stopped by %s, chi2/N %.3f (first %.3f)", rep["iterations"], rep["stopped"],
                 rep["chi2_per_n"], rep["chi2_first"])
        return out

    def report(self) -> dict:
        return {**super().report(), **getattr(self, "_report", {})}
