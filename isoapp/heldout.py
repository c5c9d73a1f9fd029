"""Self-validation on the stack itself: does the restoration beat interpolation here?

Before training, a few lateral planes are held out (:func:`choose_heldout`; methods leave them out
of their training pairs). After training, each held-out plane is degraded by the stack's model
along rows and, turned, along columns (blur, sampling every ``F`` rows, noise after the blur, as
:mod:`isoapp.pairs` does), restored by the method from its samples, and compared with the sharp
plane; so is linear and cubic interpolation of the same samples. The gain over linear
interpolation (PSNR and SSIM) is reported, saved with the model and used by ``--method auto``.

The check is only as good as the degradation model: a wrong blur estimate degrades the held-out
planes the wrong way too, so a positive gain here is necessary, not sufficient.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from . import metrics
from .degradation import Degradation
from .degrade import fft_convolve, output_length, subsample, upsample

log = logging.getLogger(__name__)


def choose_heldout(nz: int, fraction: float = 0.1, min_planes: int = 2, max_planes: int = 6) -> list[int]:
    """Lateral planes to hold out: about ``fraction`` of ``nz``, spread out, never the first or last."""
    if nz < 8:
        return []
    k = int(min(max_planes, max(min_planes, round(fraction * nz))))
    return sorted({int(round(v)) for v in np.linspace(1, nz - 2, k + 2)[1:-1]})


def degrade_planes(planes: np.ndarray, kernel: np.ndarray, degradation: Degradation,
                   rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(sharp, samples)]`` for each orientation: planes turned so that the degraded axis is rows."""
    k = np.asarray(kernel, np.float32)
    kn = k / k.sum()
    kept = float(kn.ravel() @ kn.ravel())
    out = []
    for orient in (0, 1):
        b = fft_convolve(planes, k if orient == 0 else k.T, axes=(-2, -1))
        sharp = planes if orient == 0 else planes.transpose(0, 2, 1)
        b = b if orient == 0 else b.transpose(0, 2, 1)
        s = subsample(b, degradation.factor, axis=1)
        out.append((np.ascontiguousarray(sharp), degradation.add_noise(s, rng, already=kept)))
    return out


def _scores(ref: np.ndarray, img: np.ndarray) -> tuple[float, float]:
    """Mean PSNR and SSIM over planes, on the data range of the reference (normalised: about 1)."""
    dr = float(ref.max() - ref.min()) or 1.0
    return (float(np.mean([metrics.psnr(r, i, data_range=dr) for r, i in zip(ref, img, strict=True)])),
            float(np.mean([metrics.ssim(r, i, data_range=dr) for r, i in zip(ref, img, strict=True)])))


def evaluate(method: Any, planes: np.ndarray, kernel: np.ndarray, degradation: Degradation, ctx: Any,
             seed: int = 0) -> dict[str, Any] | None:
    """Held-out gain of ``method`` over linear interpolation; None when it cannot restore single planes.

    ``method.restore_sampled(samples, ctx)`` restores ``(N, m, W)`` planes sampled every ``F`` rows
    onto ``output_length(m, F)`` rows (None: not available for this method, e.g. 3D networks).
    """
    if len(planes) == 0 or not method.heldout_check:
        return None
    F = degradation.factor
    rng = np.random.default_rng(seed + 1234)
    border = int(math.ceil(F)) + 2
    scores: dict[str, list[tuple[float, float]]] = {"method": [], "linear": [], "cubic": []}
    for sharp, samples in degrade_planes(np.asarray(planes, np.float32), kernel, degradation, rng):
        n = output_length(samples.shape[1], F)
        sl = (slice(None), slice(border, n - border), slice(border, sharp.shape[2] - border))
        ref = sharp[:, :n][sl]
        scores["method"].append(_scores(ref, method.restore_sampled(samples, ctx)[sl]))
        scores["linear"].append(_scores(ref, upsample(samples, F, axis=1, order=1)[sl]))
        scores["cubic"].append(_scores(ref, upsample(samples, F, axis=1, order=3)[sl]))
    (p_m, s_m), (p_l, s_l), (p_c, s_c) = ((float(a), float(b)) for a, b in
                                          (np.mean(scores[k], axis=0) for k in ("method", "linear", "cubic")))
    res = {"n_planes": int(len(planes)), "psnr_method": round(p_m, 3), "psnr_interp": round(p_l, 3),
           "psnr_cubic": round(p_c, 3), "psnr_gain_db": round(p_m - p_l, 3), "ssim_gain": round(s_m - s_l, 4),
           "cubic_gain_db": round(p_c - p_l, 3), "ssim_method": round(s_m, 4), "ssim_interp": round(s_l, 4)}
    log.info("held-out check on %d lateral planes: %s %.2f dB vs linear %.2f dB (gain %+.2f dB, SSIM %+.3f)",
             len(planes), method.name, p_m, p_l, p_m - p_l, s_m - s_l)
    return res
