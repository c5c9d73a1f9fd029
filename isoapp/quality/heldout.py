"""Self-validation on the stack itself: does the restoration beat interpolation here?

Before training, a few lateral planes are held out (:func:`choose_heldout`; methods leave them out
of their training pairs). After training, each held-out plane is degraded by the stack's model
along rows and, turned, along columns (blur, sampling every ``F`` rows, noise after the blur, as
:mod:`isoapp.training.pairs` does), restored by the method from its samples, and compared with the sharp
plane; so is linear and cubic interpolation of the same samples. The gain over linear
interpolation (PSNR and SSIM) is reported, saved with the model and used by ``--method auto``.

Plane-wise methods and interpolations restore single planes, so the planes are spread over the
stack. A 3D network needs 3D context: it holds out one contiguous slab of planes
(``Method.heldout_slab``), which its training crops never overlap (:func:`interpolated_rows` for
crops of the z-interpolated stack). The slab is interpolated along z onto the lateral grid, as the
network's lateral training pairs are, and each of its planes is degraded the same way; seen from
the side (the degraded axis as z), the samples are a small stack that the method restores as it
restores a stack, with its own axis conventions (``Method.restore_sampled``).

The check is only as good as the degradation model: a wrong blur estimate degrades the held-out
planes the wrong way too, so a positive gain here is necessary, not sufficient.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..physics.acquisition import acquire_planes
from ..physics.degradation import Degradation
from ..physics.forward import output_length, upsample
from . import metrics

log = logging.getLogger(__name__)

MIN_SLAB = 3


def choose_heldout(nz: int, fraction: float = 0.1, min_planes: int = 2, max_planes: int = 6, *,
                   slab: int | None = None, signal: Sequence[float] | None = None) -> list[int]:
    """Lateral planes to hold out: about ``fraction`` of ``nz``, spread out, never the first or last.

    With ``slab`` (the planes one training crop of a 3D method spans): one contiguous slab of at
    least ``MIN_SLAB`` planes instead, leaving a contiguous run of ``slab`` planes at one side to
    train on; where the planes' ``signal`` (:func:`plane_signal`) is highest, since empty planes
    say nothing about a restoration, else nearest the centre. Empty when the stack has no room.
    """
    if nz < 8:
        return []
    k = int(min(max_planes, max(min_planes, round(fraction * nz))))
    if slab is None:
        return sorted({int(round(v)) for v in np.linspace(1, nz - 2, k + 2)[1:-1]})
    k = max(k, MIN_SLAB)
    starts = [z0 for z0 in range(nz - k + 1) if max(z0, nz - z0 - k) >= slab]
    if not starts:
        return []
    sig = np.zeros(nz) if signal is None else np.asarray(signal, np.float64)
    best = max(starts, key=lambda z0: (round(float(sig[z0:z0 + k].sum()), 6), -abs(z0 - (nz - k) / 2)))
    return list(range(best, best + k))


def plane_signal(vol: np.ndarray, max_pixels: int = 2**16) -> np.ndarray:
    """Per lateral plane: its 99th percentile above its median (a strided sample of each plane)."""
    step = max(1, int(math.sqrt(vol.shape[1] * vol.shape[2] / max_pixels)))
    sub = np.asarray(vol[:, ::step, ::step], np.float32).reshape(len(vol), -1)
    return np.percentile(sub, 99, axis=1) - np.median(sub, axis=1)


def check_slab(planes: Sequence[int], method: str) -> None:
    """Refuse held-out planes that are not one contiguous slab: a 3D method's check restores them as a stack."""
    if len(planes) and list(planes) != list(range(min(planes), max(planes) + 1)):
        raise ConfigError(f"{method} is checked on one contiguous slab of held-out planes, not on planes "
                          f"{list(planes)} spread over the stack (it cannot be a candidate of auto)")


def interpolated_rows(planes: Sequence[int], factor: float, n: int) -> np.ndarray:
    """Rows of the z-interpolated stack (``upsample``: row ``k`` at position ``k / F``) that read ``planes``.

    Linear interpolation at ``k / F`` reads plane ``floor(k / F)`` and the next one (with weight 0
    at whole positions); training crops of that grid must not cover these rows for ``planes`` to
    stay held out.
    """
    if not len(planes):
        return np.zeros(0, int)
    lo = np.floor(np.arange(n) / float(factor) + 1e-9).astype(int)
    held = np.asarray(planes, int)
    return np.flatnonzero(np.isin(lo, held) | np.isin(lo + 1, held))


def withheld(vol: np.ndarray, planes: Sequence[int]) -> np.ndarray:
    """``vol`` with ``planes`` replaced by linear interpolation between the nearest kept planes.

    For a method that also learns from the stack's axial views (Self-Net's unpaired domain), so that
    the held-out planes reach its training only as what interpolation makes of their neighbours.
    ``vol`` itself is not modified; without ``planes`` it is returned as it is.
    """
    if not len(planes):
        return vol
    nz = vol.shape[0]
    held = np.unique(np.asarray(planes, int))
    keep = np.setdiff1d(np.arange(nz), held)
    if not len(keep):
        raise ValueError("every plane is held out")
    out = np.array(vol, np.float32, copy=True)
    for h in held:
        i = int(np.searchsorted(keep, h))
        lo, hi = keep[max(i - 1, 0)], keep[min(i, len(keep) - 1)]
        w = 0.0 if hi == lo else (h - lo) / (hi - lo)
        out[h] = (1.0 - w) * vol[lo] + w * vol[hi]
    return out


def planes_text(ho: dict[str, Any]) -> str:
    """Which planes a held-out report covers, for people: "4" or "a slab of 6 consecutive"."""
    n = ho.get("n_planes", "?")
    return f"a slab of {n} consecutive" if ho.get("slab") else str(n)


def se_text(ho: dict[str, Any]) -> str:
    """`` ± SE`` of a held-out gain (its standard error over planes and orientations), or "" when unknown."""
    se = ho.get("psnr_gain_se_db")
    return f" ± {se:.2f}" if se else ""


def _scores(ref: np.ndarray, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM of each plane, on the data range of the reference (normalised: about 1)."""
    dr = float(ref.max() - ref.min()) or 1.0
    return (np.array([metrics.psnr(r, i, data_range=dr) for r, i in zip(ref, img, strict=True)]),
            np.array([metrics.ssim(r, i, data_range=dr) for r, i in zip(ref, img, strict=True)]))


def _mean_se(d: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of per-plane differences (SE 0 for a single plane)."""
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def evaluate(method: Any, planes: np.ndarray, kernel: np.ndarray, degradation: Degradation, ctx: Any,
             seed: int = 0) -> dict[str, Any] | None:
    """Held-out gain of ``method`` over linear interpolation; None when the method has no check.

    ``planes`` are the held-out lateral planes (``method.heldout_slab``: one contiguous slab, in
    order). ``method.restore_sampled(samples, ctx)`` restores ``(N, m, W)`` planes sampled every
    ``F`` rows onto ``output_length(m, F)`` rows (None: not available for this method).
    """
    if len(planes) == 0 or not method.heldout_check:
        return None
    F = degradation.factor
    n_held = len(planes)
    planes = np.asarray(planes, np.float32)
    if method.heldout_slab:  # the slab's z axis on the lateral grid, as the 3D network's lateral pairs have it
        planes = upsample(planes, F, axis=0, order=1)
    rng = np.random.default_rng(seed + 1234)
    border = int(math.ceil(F)) + 2
    scores: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"method": [], "linear": [], "cubic": []}
    for sharp, samples in acquire_planes(planes, kernel, degradation, rng):
        n = output_length(samples.shape[1], F)
        sl = (slice(None), slice(border, n - border), slice(border, sharp.shape[2] - border))
        ref = sharp[:, :n][sl]
        restored = method.restore_sampled(samples, ctx)
        if restored is None:
            return None
        scores["method"].append(_scores(ref, restored[sl]))
        scores["linear"].append(_scores(ref, upsample(samples, F, axis=1, order=1)[sl]))
        scores["cubic"].append(_scores(ref, upsample(samples, F, axis=1, order=3)[sl]))
    # per plane and orientation: PSNR (dB) and SSIM, each method
    (pm, sm), (pl, sl_), (pc, _) = ((np.concatenate([a for a, _ in scores[k]]),
                                     np.concatenate([b for _, b in scores[k]])) for k in ("method", "linear", "cubic"))
    p_m, p_l, p_c, s_m, s_l = (float(v.mean()) for v in (pm, pl, pc, sm, sl_))
    _, se_lin = _mean_se(pm - pl)
    over_cubic, se_cub = _mean_se(pm - pc)
    res = {"n_planes": n_held, "slab": bool(method.heldout_slab), "psnr_method": round(p_m, 3),
           "psnr_interp": round(p_l, 3), "psnr_cubic": round(p_c, 3), "psnr_gain_db": round(p_m - p_l, 3),
           "ssim_gain": round(s_m - s_l, 4), "cubic_gain_db": round(p_c - p_l, 3), "ssim_method": round(s_m, 4),
           "ssim_interp": round(s_l, 4), "psnr_gain_se_db": round(se_lin, 3),
           "cubic_margin_db": round(over_cubic, 3), "cubic_margin_se_db": round(se_cub, 3)}
    log.info("held-out check on %d lateral planes%s: %s %.2f dB vs linear %.2f dB (gain %+.2f ± %.2f dB, "
             "SSIM %+.3f)", n_held, " (one slab)" if method.heldout_slab else "", method.name, p_m, p_l, p_m - p_l,
             se_lin, s_m - s_l)
    return res
