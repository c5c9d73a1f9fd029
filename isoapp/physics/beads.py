"""A measured PSF from a stack of sub-resolution beads.

:func:`find_beads` detects the beads (light smoothing, median background, local maxima above a
noise-based threshold) and keeps the usable ones (box inside the stack, isolated, not saturated,
of typical brightness); :func:`average_beads` aligns their crops to sub-pixel precision and
averages them; :func:`psf_from_beads` does both, cleans the result with
:func:`~isoapp.physics.psf.prepare_psf` and reports what it found.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.errors import ConfigError, InputError
from .profile import fwhm_profile
from .psf import prepare_psf, psf_core_fwhm

log = logging.getLogger(__name__)

#: Default detection threshold in robust noise standard deviations above the background. The
#: smoothed noise of a ~1e6-voxel stack rarely exceeds 5 sd (Gaussian tail: P(>5 sd) ~ 3e-7 per
#: voxel, fewer independent voxels after smoothing); 8 sd leaves a margin for non-Gaussian camera
#: noise while keeping beads of a few percent of a bright bead's peak.
DEFAULT_K = 8.0


@dataclass
class Bead:
    """One detected bead: its integer peak (z, y, x), smoothed peak height above background,
    integrated intensity of its box above background, and why it was rejected (None: used)."""

    peak: tuple[int, int, int]
    height: float
    integral: float = 0.0
    rejected: str | None = None

    @property
    def used(self) -> bool:
        """True when the bead goes into the average."""
        return self.rejected is None


def _robust_sd(values: np.ndarray) -> float:
    """Robust noise standard deviation: 1.4826 × MAD (the sd of Gaussian noise)."""
    med = np.median(values)
    return float(1.4826 * np.median(np.abs(values - med)))


def _peak_fwhm(smooth: np.ndarray, peak: Sequence[int]) -> tuple[float, float, float]:
    """FWHM in pixels along each axis of the lines through ``peak`` (Gaussian fits, >= 1)."""
    out = []
    for ax in range(3):
        line = np.moveaxis(smooth, ax, -1)[tuple(np.delete(np.asarray(peak), ax))]
        f = fwhm_profile(line) if line.size >= 5 else float("nan")
        out.append(f if np.isfinite(f) and 1.0 <= f < line.size else 1.0)
    return tuple(out)  # type: ignore[return-value]


def default_half(shape: Sequence[int], fwhm_px: Sequence[float]) -> tuple[int, int, int]:
    """Half-size of a bead's box: 2 × FWHM per axis (a box of ~4 FWHM, where a Gaussian core has
    fallen below 1e-4 of its peak), at least 3 px and at most a quarter of the axis (>= 3)."""
    return tuple(int(min(max(3, math.ceil(2.0 * f)), max(3, n // 4)))  # type: ignore[return-value]
                 for f, n in zip(fwhm_px, shape, strict=True))


def find_beads(data: np.ndarray, *, half: Sequence[int] | None = None, k: float = DEFAULT_K,
               sigma: float = 1.0) -> tuple[list[Bead], dict]:
    """Detect beads and decide which can be averaged.

    Parameters
    ----------
    data
        3D ZYX bead stack (not modified).
    half
        Half-size (z, y, x) in pixels of each bead's box; None: :func:`default_half` of the
        median FWHM of the brightest beads.
    k
        Detection threshold in robust noise sd above the median background (see :data:`DEFAULT_K`).
    sigma
        Gaussian smoothing in pixels before detection.

    Returns
    -------
    beads, info
        Every detected bead (``rejected`` says why an unused one was dropped) and a dict with
        ``background``, ``noise_sd``, ``threshold``, ``half``, ``bead_fwhm_px`` (the beads' typical FWHM,
        z, y, x).
    """
    a = np.asarray(data)
    if a.ndim != 3:
        raise InputError(f"a 3D (Z, Y, X) bead stack is required, got shape {a.shape}")
    if not k > 0:
        raise ConfigError(f"--threshold must be > 0 noise sd, got {k}")
    smooth = ndimage.gaussian_filter(a.astype(np.float32), sigma)
    bg = float(np.median(smooth))
    sd = _robust_sd(smooth)
    if sd <= 0:  # quantised, mostly constant background (e.g. uint8 at 1): sd of the lower half
        low = smooth[smooth <= np.percentile(smooth, 50)]
        sd = max(float(low.std()), float(np.finfo(np.float32).eps * max(abs(bg), 1.0)))
    thr = bg + k * sd
    from skimage.feature import peak_local_max

    # the expected bead size: median FWHM of the (up to) 5 brightest maxima, so that one
    # unresolved pair does not set it
    top = peak_local_max(smooth, min_distance=2, threshold_abs=thr, exclude_border=False, num_peaks=5)
    fwhms = np.asarray([_peak_fwhm(smooth - bg, p) for p in top]).reshape(-1, 3)
    fwhm = tuple(float(f) for f in np.median(fwhms, axis=0)) if len(fwhms) else (1.0, 1.0, 1.0)
    half = default_half(a.shape, fwhm) if half is None else tuple(int(h) for h in half)
    if len(half) != 3 or min(half) < 1:
        raise ConfigError(f"--half needs three sizes >= 1 pixel (Z Y X), got {half}")
    info = {"background": bg, "noise_sd": sd, "threshold": thr, "half": half, "bead_fwhm_px": fwhm}
    if not len(top):
        return [], info
    # beads closer than about one FWHM are not resolved; suppress maxima within one FWHM of a
    # brighter one (so a bead's own noise bumps and tails do not count as neighbours)
    fp = np.ones(tuple(2 * max(1, round(f)) + 1 for f in fwhm), dtype=bool)
    peaks = peak_local_max(smooth, footprint=fp, threshold_abs=thr, exclude_border=False)
    beads = [Bead(tuple(int(v) for v in p), float(smooth[tuple(p)] - bg)) for p in peaks]
    _reject(a, beads, half, bg)
    return beads, info


def _box(peak: Sequence[int], half: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(p - h, p + h + 1) for p, h in zip(peak, half, strict=True))


def _reject(a: np.ndarray, beads: list[Bead], half: Sequence[int], bg: float) -> None:
    """Mark beads at the edge, with a neighbour in their box, saturated or of atypical brightness."""
    top = np.iinfo(a.dtype).max if np.issubdtype(a.dtype, np.integer) else None
    pos = np.asarray([b.peak for b in beads]).reshape(-1, 3)
    for i, b in enumerate(beads):
        p = np.asarray(b.peak)
        if np.any(p - half < 0) or np.any(p + half >= a.shape):
            b.rejected = f"its box of half-size {tuple(half)} px leaves the stack (too near the edge)"
            continue
        others = np.delete(pos, i, axis=0)
        if len(others) and np.any(np.all(np.abs(others - p) <= half, axis=1)):
            b.rejected = "another bead lies inside its box (not isolated)"
            continue
        crop = a[_box(b.peak, half)]
        if top is not None and np.any(crop >= top):
            b.rejected = f"saturated (voxels at {top})"
            continue
        b.integral = float(np.sum(crop, dtype=np.float64) - bg * crop.size)
    kept = [b for b in beads if b.used]
    if kept:
        med = float(np.median([b.integral for b in kept]))
        for b in kept:
            if not med / 3 <= b.integral <= 3 * med:
                b.rejected = f"brightness outlier (integral {b.integral:.4g}, median {med:.4g})"
    for b in beads:
        if b.rejected:
            log.info("bead at (z, y, x) %s dropped: %s", b.peak, b.rejected)


def bead_centre(crop: np.ndarray, background: float, sigma: float = 1.0) -> np.ndarray:
    """Sub-pixel centre (z, y, x) of the bead in ``crop``.

    Three-point Gaussian (log-parabola) fits along each axis through the peak of the smoothed
    crop: exact for a Gaussian core, unlike a thresholded centre of mass, which is pulled toward
    the peak voxel. An axis where the fit fails (non-positive values) uses the centre of mass of
    the peak's 3-voxel neighbourhood.
    """
    s = ndimage.gaussian_filter(np.asarray(crop, dtype=np.float64), sigma) - background
    peak = np.unravel_index(int(np.argmax(s)), s.shape)
    out = np.asarray(peak, dtype=np.float64)
    for ax in range(3):
        i = peak[ax]
        if not 0 < i < s.shape[ax] - 1:
            continue
        idx = list(peak)
        f = []
        for d in (-1, 0, 1):
            idx[ax] = i + d
            f.append(s[tuple(idx)])
        if min(f) > 0:
            lm, l0, lp = np.log(f)
            den = lm - 2 * l0 + lp
            off = 0.5 * (lm - lp) / den if den < 0 else 0.0
        else:
            w = np.clip(f, 0.0, None)
            off = (w[2] - w[0]) / w.sum() if w.sum() > 0 else 0.0
        out[ax] += float(np.clip(off, -1.0, 1.0))
    return out


def average_beads(data: np.ndarray, beads: Sequence[Bead], half: Sequence[int], *, background: float = 0.0,
                  align: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """Align the used beads' crops on their sub-pixel centres, normalise each to sum 1 and average.

    Parameters
    ----------
    data
        The 3D stack.
    beads
        Beads from :func:`find_beads`; only the used ones are averaged.
    half
        Half-size (z, y, x) of the crops; each crop has shape ``2 * half + 1``.
    background
        Subtracted from every crop before normalising.
    align
        Shift each crop (cubic spline) so its centre lies on the central voxel; False keeps the
        integer-peak crops (for comparison: a broader average).

    Returns
    -------
    average, shifts
        The mean of the crops (the voxel-wise median with 5 or more beads) and each crop's shift.
    """
    used = [b for b in beads if b.used]
    if not used:
        raise InputError("no usable bead to average")
    a = np.asarray(data)
    centre = np.asarray(half, dtype=np.float64)
    crops, shifts = [], []
    for b in used:
        crop = a[_box(b.peak, half)].astype(np.float64) - background
        shift = centre - bead_centre(crop + background, background) if align else np.zeros(3)
        if np.any(np.abs(shift) > centre / 2):
            log.warning("bead at %s was shifted by %s px (more than half its box): it sat near the "
                        "edge of its box or is misshapen", b.peak, np.round(shift, 2).tolist())
        if align:
            crop = ndimage.shift(crop, shift, order=3, mode="nearest")
        crop = np.clip(crop, 0.0, None)
        total = crop.sum()
        if total > 0:
            crops.append(crop / total)
            shifts.append(shift)
    if not crops:
        raise InputError("every bead crop is empty after background subtraction")
    stack = np.stack(crops)
    return (np.median(stack, axis=0) if len(crops) >= 5 else stack.mean(axis=0)), shifts


def psf_from_beads(data: np.ndarray, voxel_size: Sequence[float], *, half: Sequence[int] | None = None,
                   k: float = DEFAULT_K, align: bool = True, name: str = "the stack") -> tuple[np.ndarray, dict]:
    """The averaged, cleaned PSF of the isolated beads in ``data`` and a report.

    Returns
    -------
    psf, report
        float32 PSF (odd shape, sum 1, centred; :func:`prepare_psf`) and a dict with ``n_found``,
        ``n_used``, ``rejected`` (list of ``(peak, reason)``), ``averaging`` (mean/median), ``half``,
        ``fwhm_px`` and ``fwhm_um`` (z, y, x; :func:`psf_core_fwhm`), ``axial_lateral_ratio``,
        ``background``, ``noise_sd``, ``threshold``, ``shifts``.

    Raises
    ------
    InputError
        No isolated bead above the background.
    """
    beads, info = find_beads(data, half=half, k=k)
    used = [b for b in beads if b.used]
    edge = [b for b in beads if b.rejected and "edge" in b.rejected]
    if not used and edge and half is None:  # e.g. one off-centre bead: shrink the box to fit it
        b = max(edge, key=lambda e: e.height)
        room = [min(p, n - 1 - p) for p, n in zip(b.peak, np.shape(data), strict=True)]
        if all(r >= max(1, math.ceil(f)) for r, f in zip(room, info["bead_fwhm_px"], strict=True)):
            fit = tuple(min(h, r) for h, r in zip(info["half"], room, strict=True))
            log.warning("no bead fits a box of half-size %s px; using %s px, which fits the bead at %s "
                        "near the edge", info["half"], fit, b.peak)
            beads, info = find_beads(data, half=fit, k=k)
            used = [b for b in beads if b.used]
    if not used:
        why = f" ({len(beads)} found, all rejected: see the log)" if beads else ""
        raise InputError(f"no isolated bead found above the background in {name}{why}; give a stack of "
                         "sub-resolution beads (or lower --threshold)")
    avg, shifts = average_beads(data, beads, info["half"], background=info["background"], align=align)
    psf = prepare_psf(avg)
    fwhm_px = psf_core_fwhm(psf)
    fwhm_um = tuple(float(f * v) for f, v in zip(fwhm_px, voxel_size, strict=True))
    lateral = (fwhm_um[1] + fwhm_um[2]) / 2
    report = {
        **info,
        "n_found": len(beads), "n_used": len(used),
        "rejected": [(b.peak, b.rejected) for b in beads if not b.used],
        "averaging": "median" if len(shifts) >= 5 else "mean",
        "fwhm_px": tuple(float(f) for f in fwhm_px), "fwhm_um": fwhm_um,
        "axial_lateral_ratio": fwhm_um[0] / lateral if lateral > 0 else float("nan"),
        "shifts": [tuple(float(s) for s in sh) for sh in shifts],
    }
    return psf, report
