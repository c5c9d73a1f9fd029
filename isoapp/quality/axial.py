"""The axial check: does the restoration predict recorded planes it never saw?

The lateral check (:mod:`isoapp.quality.heldout`) degrades sharp lateral planes with the stack's
*estimated* model; training uses the same model, so a wrong model fools both alike. This check
does not use the model to judge. It withholds real acquired planes and compares them with what
the method predicts at their positions:

1. **Thinning.** The odd planes ``1, 3, 5, ...`` are withheld; the even planes ``0, 2, 4, ...``
   are kept (a last odd plane with no kept plane beyond it is dropped: it would be extrapolated).
   The kept stack has twice the z step, so the method is trained on it at factor ``2F`` (a harder
   case than the real one: it measures the method's ability to fill in planes at twice the
   spacing). It restores onto a grid of ``2 dz / 2F = dz / F``: the output grid of the real run,
   on which withheld plane ``i`` sits at index ``i * F``. The training of that sub-run is the
   caller's (``restore_thin``): the Restorer and ``auto`` train the same method and preset, with
   the same degradation model at factor ``2F``, on the kept planes only.
2. **Measurement domain.** The withheld planes carry the microscope's own axial blur, which a
   restoration is meant to remove; so the prediction is re-blurred along z before comparing. The
   blur is the best Gaussian over ``REBLUR_PLANES`` (sigma 0 to 1 acquired plane: wider blurs
   would hide everything the recorded planes can tell, since their spacing is one plane), as the
   shared-data protocol does; where the user gave a PSF, its axial sigma is one more candidate.
   Linear and cubic interpolation of the kept planes get the same search (which can only help
   them: the comparison is conservative). Ringing, halos, invented structure and haze taken for
   blur still cost, since no Gaussian of at most one plane undoes them. A method that deconvolves
   with a full 3D PSF (``deconv``: sharper than the lateral resolution, haze removed) predicts the
   withheld planes through its own model instead (:meth:`~isoapp.methods.base.Method.model_planes`):
   its restoration convolved with the PSF, haze included, at their positions; a Gaussian re-blur of
   a deconvolved stack would never look like a hazy recorded plane.
3. **Scores.** Per withheld plane (laterally border-cropped): PSNR after an affine min-MSE fit
   of the prediction to the recorded plane (as the quality suite does) on the data range of all
   withheld planes, and SSIM of the fitted prediction. Gains over linear and cubic are the mean
   per-plane differences, with their standard error over planes.

4. **Bounded memory.** The thinned restoration covers the output grid of the stack it is given
   (``F`` times the region's voxels), and linear and cubic interpolation need as much again,
   cubic in float64. So the check works on a lateral window of at most ``CHECK_OUTPUT_BYTES``
   of float32 output, over all planes, where the overview holds the most signal
   (:func:`isoapp.data.io.lazy.training_region`): on a large stack the check samples one region
   rather than growing with the stack (about ten copies of that window, about 1.3 GB at most).

The check needs at least ``MIN_KEPT`` kept planes (``2 * MIN_KEPT - 1`` planes in all); a thinner
stack gets one line saying why (:func:`axial_unavailable`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..physics.forward import output_length, sample_along
from . import metrics

log = logging.getLogger(__name__)

MIN_KEPT = 4
REBLUR_PLANES = (0.0, 0.25, 0.5, 0.75, 1.0)
BORDER_XY = 4
#: float32 bytes of the thinned restoration's output the check may hold: with the interpolations
#: and their float64 spline (about ten such copies) the check stays near 1.3 GB, inside the 2 GB a
#: block-wise run may use; 128 MiB still scores ``nz / 2`` planes of a window of about
#: ``sqrt(8 Mi / (F nz))`` pixels (e.g. 360 x 360 for 128 planes at F 4).
CHECK_OUTPUT_BYTES = 128 * 2**20

RestoreThin = Callable[[np.ndarray, float], np.ndarray]


def split_planes(nz: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept (even) and withheld (odd, each with a kept plane on both sides) plane indices of an ``nz`` stack."""
    n_use = nz if nz % 2 else nz - 1
    return np.arange(0, n_use, 2), np.arange(1, n_use - 1, 2)


def axial_unavailable(nz: int) -> str | None:
    """Why a stack of ``nz`` planes gets no axial check (one line), or None when it can get one."""
    kept, _ = split_planes(nz)
    if len(kept) < MIN_KEPT:
        return (f"no axial check: a stack of {nz} planes leaves {len(kept)} planes after withholding every other "
                f"one, and training at twice the spacing needs at least {MIN_KEPT} ({2 * MIN_KEPT - 1} planes in all)")
    return None


def reblur_at(out: np.ndarray, positions: np.ndarray, sigma: float) -> np.ndarray:
    """``out`` blurred along z by a Gaussian of ``sigma`` output planes, sampled at fractional ``positions``.

    Computed only at ``positions`` (a truncated, normalised Gaussian over the neighbouring planes,
    edges clamped), so a large output is never blurred whole.
    """
    if sigma <= 0:
        return sample_along(out, positions, axis=0, order=1)
    n = out.shape[0]
    r = int(math.ceil(4 * sigma))
    res = np.empty((len(positions),) + out.shape[1:], np.float32)
    for j, p in enumerate(positions):
        k = np.arange(int(math.floor(p)) - r, int(math.ceil(p)) + r + 1)
        w = np.exp(-0.5 * ((k - p) / sigma) ** 2)
        w /= w.sum()
        res[j] = np.tensordot(w.astype(np.float32), out[np.clip(k, 0, n - 1)], axes=(0, 0))
    return res


def fitted_plane_scores(ref: np.ndarray, pred: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Per plane: PSNR (dB) and SSIM of ``pred`` after the affine min-MSE fit ``a * pred + b`` to ``ref``."""
    ps, ss = [], []
    for r, p in zip(ref.astype(np.float64), pred.astype(np.float64), strict=True):
        pm, rm = p.mean(), r.mean()
        var = float(np.mean((p - pm) ** 2))
        a = float(np.mean((p - pm) * (r - rm))) / var if var > 0 else 0.0
        fit = a * (p - pm) + rm
        mse = float(np.mean((fit - r) ** 2))
        ps.append(10 * math.log10(data_range ** 2 / mse) if mse > 0 else 99.0)
        ss.append(metrics.ssim(r.astype(np.float32), fit.astype(np.float32), data_range=data_range))
    return np.array(ps), np.array(ss)


def _best(out: np.ndarray, positions: np.ndarray, ref: np.ndarray, sigmas: Sequence[float], dr: float,
          crop: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-plane scores at the re-blur (output planes) with the best mean PSNR, and that sigma."""
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for s in sigmas:
        pred = reblur_at(out, positions, s)[(slice(None),) + crop]
        p, q = fitted_plane_scores(ref, pred, dr)
        if best is None or p.mean() > best[0].mean():
            best = (p, q, float(s))
    assert best is not None
    return best


def _mean_se(d: np.ndarray) -> tuple[float, float]:
    return float(d.mean()), (float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0)


def axial_check(vol: np.ndarray, factor: float, restore_thin: RestoreThin, *,
                user_sigma_px: float | None = None, interpolate: Callable[[np.ndarray, float, int], np.ndarray]
                | None = None) -> dict[str, Any]:
    """Withhold every other recorded plane, restore their positions from the rest, compare.

    Parameters
    ----------
    vol
        The stack (ZYX, normalised as the method sees it).
    factor
        The run's anisotropy factor ``F``; the kept planes are restored at ``2F``.
    restore_thin
        ``restore_thin(kept, 2F)``: the same method and preset trained on ``kept`` (the even
        planes) at factor ``2F``, returning its restoration (``output_length(len(kept), 2F)``
        planes).
    user_sigma_px
        The axial sigma (lateral pixels = output planes) of the user's PSF beyond the lateral one,
        tried as one more re-blur; None without a user PSF.
    interpolate
        ``interpolate(kept, 2F, order)`` onto the same grid (default :func:`isoapp.physics.forward.upsample`).

    Returns
    -------
    dict
        ``{"skipped": reason}`` for a stack too thin, else the gains (``psnr_gain_db`` over
        linear with ``psnr_gain_se_db``, ``cubic_margin_db`` over cubic with its SE,
        ``ssim_gain``), the absolute figures, ``n_planes`` withheld, the spacing ratio and the
        re-blur chosen for each (``reblur_planes``: in acquired planes).
    """
    from ..data.io.lazy import training_region
    from ..physics.forward import upsample

    interpolate = interpolate or (lambda a, f, o: upsample(a, f, axis=0, order=o))
    why = axial_unavailable(vol.shape[0])
    if why:
        return {"skipped": why}
    window = training_region(vol, int(CHECK_OUTPUT_BYTES / max(float(factor), 1.0)), min_lateral=32,
                             purpose="the axial check's window")
    vol = np.asarray(vol[(slice(None),) + tuple(window[1:])], np.float32)
    kept, held = split_planes(vol.shape[0])
    thin = np.ascontiguousarray(vol[kept])
    f2 = 2.0 * float(factor)
    n_out = output_length(len(thin), f2)
    positions = held.astype(np.float64) * float(factor)  # withheld plane i sits at output index i * F
    ny, nx = vol.shape[1:]
    b = BORDER_XY if min(ny, nx) > 4 * BORDER_XY else 0
    crop = (slice(b, ny - b), slice(b, nx - b))
    ref = vol[held][(slice(None),) + crop]
    dr = float(ref.max() - ref.min()) or 1.0
    sigmas = [s * float(factor) for s in REBLUR_PLANES]
    restored = np.asarray(restore_thin(thin, f2), np.float32)
    if restored.shape != (n_out,) + thin.shape[1:]:
        raise ValueError(f"the thinned restoration has shape {restored.shape} (planes, rows, columns), expected "
                         f"{(n_out,) + thin.shape[1:]}")
    method_sigmas = sigmas + ([float(user_sigma_px)] if user_sigma_px else [])
    m = getattr(restore_thin, "method", None)
    own = m.model_planes(restored, positions) if m is not None else None
    if own is not None:  # a deconvolution: its own 3D-PSF model predicts the withheld planes, haze included
        pm, sm = fitted_plane_scores(ref, np.asarray(own, np.float32)[(slice(None),) + crop], dr)
        sig_m = float("nan")
    else:
        pm, sm, sig_m = _best(restored, positions, ref, method_sigmas, dr, crop)
    pl, sl, sig_l = _best(interpolate(thin, f2, 1), positions, ref, sigmas, dr, crop)
    pc, sc, sig_c = _best(interpolate(thin, f2, 3), positions, ref, sigmas, dr, crop)
    gain, se = _mean_se(pm - pl)
    margin, se_c = _mean_se(pm - pc)
    ssim_gain, ssim_se = _mean_se(sm - sl)
    res = {"n_planes": int(len(held)), "spacing_ratio": 2, "kept_planes": int(len(kept)),
           "window_yx": [int(window[1].start), int(window[1].stop), int(window[2].start), int(window[2].stop)],
           "psnr_method": round(float(pm.mean()), 3), "psnr_interp": round(float(pl.mean()), 3),
           "psnr_cubic": round(float(pc.mean()), 3), "psnr_gain_db": round(gain, 3), "psnr_gain_se_db": round(se, 3),
           "cubic_margin_db": round(margin, 3), "cubic_margin_se_db": round(se_c, 3),
           "cubic_gain_db": round(float((pc - pl).mean()), 3), "ssim_method": round(float(sm.mean()), 4),
           "ssim_interp": round(float(sl.mean()), 4), "ssim_gain": round(ssim_gain, 4),
           "ssim_gain_se": round(ssim_se, 4),
           "method_prediction": "its own 3D PSF model" if own is not None else "re-blurred along z",
           "reblur_planes": {"method": None if own is not None else round(sig_m / factor, 3),
                             "linear": round(sig_l / factor, 3),
                             "cubic": round(sig_c / factor, 3)},
           "reblur_user_psf": bool(user_sigma_px) and abs(sig_m - float(user_sigma_px or 0)) < 1e-9}
    log.info("axial check on %d withheld recorded planes (2x the spacing): %+.2f ± %.2f dB PSNR over linear, "
             "%+.2f dB over cubic, SSIM %+.3f", len(held), gain, se, margin, ssim_gain)
    return res


def axial_text(ax: dict[str, Any]) -> str:
    """One line for people: what the axial check compares with, and its gains."""
    if "skipped" in ax:
        return ax["skipped"]
    se = f" ± {ax['psnr_gain_se_db']:.2f}" if ax.get("psnr_gain_se_db") else ""
    how = ("the method's prediction through its own 3D PSF model" if ax.get("method_prediction", "").startswith("its")
           else "prediction re-blurred along z by the best Gaussian")
    return (f"axial check ({ax['n_planes']} withheld recorded planes at {ax.get('spacing_ratio', 2)}× the spacing, "
            f"{how}): {ax['psnr_gain_db']:+.2f}{se} dB PSNR over linear, "
            f"{ax['cubic_margin_db']:+.2f} dB over cubic, {ax['ssim_gain']:+.3f} SSIM over linear")
