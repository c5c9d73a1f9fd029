"""Data consistency: does the restored stack, put through the forward model, give back the recorded planes?

A restoration claims to be the sample seen with the lateral resolution everywhere. The
microscope would have recorded it as: the restoration blurred along z by the axial blur beyond
the lateral one (the degradation model's Gaussian, or the user's PSF), then sampled at the
acquired plane positions (input plane ``i`` is output plane ``i * F``; fractional positions are
interpolated linearly). What is left after subtracting that from the recorded planes should be
the noise: the residual divided by the noise model's standard deviation
(:meth:`isoapp.physics.degradation.Degradation.noise_var`, normalised units) has
``chi2/N`` about 1, and about 0.3 % of voxels beyond 3 sigma. Invented structure, lost
structure, halos and intensity drift raise it; a residual far above 1 is said plainly.

Intensity fidelity is reported beside it: the sum along z (above the background) per lateral
position, output against input (the output's planes are ``1/F`` apart), and how much of the
output falls below the background by more than 3 noise sigma (the dark rims under bright
objects). The model is the stack's own estimate unless the user gave a PSF, so a wrong model
raises the residual of a right restoration too: read it with the axial check
(:mod:`isoapp.quality.axial`), which does not use the model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..physics.degradation import Degradation
from .axial import reblur_at

log = logging.getLogger(__name__)

CHI2_WARN = 2.0  # chi2/N above this is "far above 1" and said plainly
VAR_FLOOR = 0.25  # noise variance never below this share of its median (a fitted offset may reach 0)
BG_PERCENTILE = 1.0


def forward(out: np.ndarray, factor: float, sigma_px: float, n_in: int) -> np.ndarray:
    """The recorded planes ``out`` implies: blurred along z by ``sigma_px`` output planes, sampled at ``i * F``."""
    return reblur_at(np.asarray(out, np.float32), np.arange(n_in, dtype=np.float64) * float(factor), float(sigma_px))


def _zsum(a: np.ndarray, step: float) -> np.ndarray:
    """Trapezoid sum along z with planes ``step`` apart (per lateral position)."""
    return (a.sum(axis=0, dtype=np.float64) - 0.5 * (a[0] + a[-1])) * step


def consistency(vol: np.ndarray, out: np.ndarray, degradation: Degradation, *, sigma_px: float | None = None,
                pred: np.ndarray | None = None, residual_map: bool = False) -> tuple[dict[str, Any], np.ndarray | None]:
    """The restoration ``out`` against the recorded ``vol`` through the forward model.

    Parameters
    ----------
    vol
        Recorded stack (ZYX, normalised as the method sees it).
    out
        Its restoration on the output grid (``output_length(nz, F)`` planes, same units).
    degradation
        The stack's model: factor, axial blur (``axial_sigma_px``) and noise variance.
    sigma_px
        Axial blur to use instead of the model's (the user's PSF beyond the lateral one).
    pred
        The recorded planes the method's own forward model predicts from ``out`` (a method that
        deconvolved with a full 3D PSF: :meth:`isoapp.methods.base.Method.model_planes`);
        used instead of the axial model.
    residual_map
        Also return the residual in noise sigmas, on the input grid (float32, ZYX).

    Returns
    -------
    tuple
        The report (``chi2_per_n`` overall and ``chi2_per_plane``, ``frac_beyond_3sigma``,
        ``sum_z_change_pct`` overall and ``sum_z_column_p95_pct``, ``below_background_frac`` and
        ``below_background_min_sigma``, ``far_above_1``) and the map (or None).
    """
    x = np.asarray(vol, np.float32)
    y = np.asarray(out, np.float32)
    F = float(degradation.factor)
    sigma = degradation.axial_sigma_px if sigma_px is None else float(sigma_px)
    own = pred is not None
    pred = forward(y, F, sigma, x.shape[0]) if pred is None else np.asarray(pred, np.float32)
    var = np.asarray(degradation.noise_var(pred), np.float32)
    med = float(np.median(var))
    if not degradation.has_noise or med <= 0:
        return {"skipped": "no noise model for this stack, so the residual cannot be put in noise units"}, None
    var = np.maximum(var, VAR_FLOOR * med)
    z = (x - pred) / np.sqrt(var)
    chi2 = z * z
    per_plane = chi2.reshape(len(x), -1).mean(axis=1)
    overall = float(chi2.mean())
    bg = float(np.percentile(x, BG_PERCENTILE))
    sd_bg = float(np.sqrt(max(float(degradation.noise_var(np.float32(bg))), VAR_FLOOR * med)))
    sx, sy = _zsum(x - bg, 1.0), _zsum(y - bg, 1.0 / F)
    total_in = float(sx.sum())
    change = 100.0 * (float(sy.sum()) - total_in) / total_in if total_in > 0 else 0.0
    cols = sx > np.percentile(sx, 50)
    rel = np.abs(sy[cols] - sx[cols]) / np.maximum(sx[cols], 1e-12) * 100.0 if cols.any() else np.zeros(1)
    depth = (bg - y) / sd_bg
    res = {"chi2_per_n": round(overall, 3), "chi2_per_plane": [round(float(v), 3) for v in per_plane],
           "chi2_worst_plane": int(np.argmax(per_plane)), "frac_beyond_3sigma": round(float((chi2 > 9).mean()), 5),
           "sum_z_change_pct": round(change, 2), "sum_z_column_p95_pct": round(float(np.percentile(rel, 95)), 2),
           "below_background_frac": round(float((depth > 3).mean()), 5),
           "below_background_min_sigma": round(float(-depth.max()), 2), "axial_sigma_px": round(float(sigma), 3),
           "blur": ("method's 3D PSF" if own else "user PSF" if sigma_px is not None
                    else f"degradation model ({degradation.blur_source})"),
           "far_above_1": overall > CHI2_WARN}
    log.info("data consistency: chi2/N %.2f (worst plane %d: %.2f), %.2f%% of voxels beyond 3 sigma, sum along z "
             "%+.1f%%, %.3f%% of the output below the background by > 3 sigma", overall, res["chi2_worst_plane"],
             float(per_plane.max()), 100 * res["frac_beyond_3sigma"], change, 100 * res["below_background_frac"])
    return res, (z.astype(np.float32) if residual_map else None)


def consistency_lines(c: dict[str, Any]) -> list[str]:
    """The report for people (one or two lines)."""
    if "skipped" in c:
        return [f"data consistency: {c['skipped']}"]
    lines = [f"data consistency (restored stack blurred by the {c['blur']} and sampled at the recorded planes, "
             f"against them): chi2/N {c['chi2_per_n']:.2f} (1 = within the noise; worst plane "
             f"{c['chi2_worst_plane']}: {max(c['chi2_per_plane']):.2f}), {100 * c['frac_beyond_3sigma']:.2f}% of "
             f"voxels beyond 3 sigma; sum along z {c['sum_z_change_pct']:+.1f}% (95% of bright columns within "
             f"{c['sum_z_column_p95_pct']:.1f}%); {100 * c['below_background_frac']:.2f}% of the output below the "
             f"background by more than 3 noise sigma"]
    if c.get("far_above_1"):
        lines.append(f"WARNING: the restored stack does not reproduce the recorded planes within their noise "
                     f"(chi2/N {c['chi2_per_n']:.2f}, far above 1): it adds, removes or moves intensity the data "
                     "do not support, or the degradation model is wrong; look at the residual map "
                     "(--residual-map) and the axial check")
    return lines
