"""Resolution from fitted widths: FWHM of line profiles, beads and thin tubes.

Every width is the FWHM of a least-squares Gaussian with a constant offset,
``a * exp(-(x - mu)**2 / (2 s**2)) + c``, i.e. ``2 sqrt(2 ln 2) |s|`` in physical units.
For a separable (Gaussian) bead or tube, a profile through any voxel of the object along one
axis has the object's width along that axis, so profiles through the nearest voxel of the
sub-voxel peak are exact; no interpolation blurs them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..physics.profile import SIGMA_TO_FWHM, fit_gaussian, fwhm_profile  # noqa: F401 - re-exported
from .segmentation import otsu_threshold

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- beads
def find_peaks(vol: np.ndarray, threshold: float | None = None, sigma: float = 1.0) -> np.ndarray:
    """Integer ``(n, 3)`` positions of local maxima of the smoothed ``vol`` above ``threshold``.

    The default threshold is ``median + 0.25 * (max - median)`` of the smoothed volume; a
    plateau of equal maxima yields one peak (its rounded centre of mass).
    """
    s = ndimage.gaussian_filter(np.asarray(vol, dtype=np.float32), sigma) if sigma > 0 else np.asarray(vol)
    if threshold is None:
        bg = float(np.median(s))
        threshold = bg + 0.25 * (float(s.max()) - bg)
    peaks = (s == ndimage.maximum_filter(s, size=3)) & (s > threshold)
    lab, n = ndimage.label(peaks, structure=np.ones((3,) * s.ndim))
    if n == 0:
        return np.zeros((0, s.ndim), dtype=int)
    com = ndimage.center_of_mass(peaks, lab, range(1, n + 1))
    return np.rint(np.asarray(com)).astype(int).reshape(n, s.ndim)


def _default_box(vol: np.ndarray, peak: np.ndarray) -> tuple[int, ...]:
    """Half-widths of 1.5 estimated FWHM (at least 4 voxels) around the brightest bead."""
    bg = float(np.median(vol))
    half = bg + 0.5 * (float(vol[tuple(peak)]) - bg)
    box = []
    for ax in range(vol.ndim):
        line = np.moveaxis(vol, ax, -1)[tuple(np.delete(peak, ax))]
        p = int(peak[ax])
        lo = p
        while lo > 0 and line[lo - 1] > half:
            lo -= 1
        hi = p
        while hi < line.size - 1 and line[hi + 1] > half:
            hi += 1
        box.append(max(4, int(np.ceil(1.5 * (hi - lo + 1)))))
    return tuple(box)


def bead_fwhm(vol, centres=None, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
              box: int | Sequence[int] | None = None, threshold: float | None = None) -> dict:
    """Median FWHM (µm) along z, y and x over the beads in ``vol``.

    Parameters
    ----------
    vol
        ZYX volume with sub-resolution beads.
    centres
        ``(n, 3)`` bead positions in voxels (may be fractional); found with :func:`find_peaks`
        (``threshold``) when None.
    voxel_size
        ``(z, y, x)`` in µm.
    box
        Half-length of each line profile in voxels (one int or one per axis). Default: 1.5x
        the half-maximum width of the brightest bead along each axis, at least 4.

    Beads closer than ``box`` to a border, or with another bead inside their box, are
    skipped. For each bead the profiles through its voxel are fitted, the voxel nearest the
    fitted sub-voxel peak is taken and fitted again.

    Returns
    -------
    dict
        ``fwhm_z, fwhm_y, fwhm_x`` (medians), ``fwhm_axial`` (= z), ``fwhm_lateral``
        (mean of y and x), ``n`` (beads used) and ``centres`` (their sub-voxel centres).
    """
    v = np.asarray(vol, dtype=np.float64)
    pts = find_peaks(v, threshold) if centres is None else np.rint(np.asarray(centres, float)).astype(int)
    pts = pts.reshape(-1, 3)
    out = {"fwhm_z": float("nan"), "fwhm_y": float("nan"), "fwhm_x": float("nan"),
           "fwhm_axial": float("nan"), "fwhm_lateral": float("nan"), "n": 0, "centres": []}
    if len(pts) == 0:
        log.warning("bead_fwhm: no bead found")
        return out
    if box is None:
        bright = pts[int(np.argmax([v[tuple(p)] for p in pts]))]
        box = _default_box(v, bright)
    hw = np.broadcast_to(np.asarray(box, dtype=int), (3,))
    shape = np.asarray(v.shape)
    widths, centres_used = [], []
    for k, p in enumerate(pts):
        if np.any(p - hw < 0) or np.any(p + hw >= shape):
            continue
        others = np.delete(pts, k, axis=0)
        if len(others) and np.any(np.all(np.abs(others - p) <= hw, axis=1)):
            continue
        fit = _fit_bead(v, p, hw)
        if fit is not None:
            widths.append(fit[0])
            centres_used.append(fit[1])
    if not widths:
        log.warning("bead_fwhm: no bead could be fitted (%d candidates near borders/overlapping)", len(pts))
        return out
    w = np.median(np.asarray(widths) * np.asarray(voxel_size, dtype=np.float64), axis=0)
    out.update(fwhm_z=float(w[0]), fwhm_y=float(w[1]), fwhm_x=float(w[2]), fwhm_axial=float(w[0]),
               fwhm_lateral=float(0.5 * (w[1] + w[2])), n=len(widths),
               centres=[[float(c) for c in cc] for cc in centres_used])
    return out


def _fit_bead(v: np.ndarray, p: np.ndarray, hw: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """FWHM in voxels along z, y, x and the sub-voxel centre of one bead (None if a fit fails)."""
    for _ in range(2):
        widths, centre = np.zeros(3), np.zeros(3)
        for ax in range(3):
            idx = [slice(q, q + 1) for q in p]
            idx[ax] = slice(p[ax] - hw[ax], p[ax] + hw[ax] + 1)
            a, mu, s, c = fit_gaussian(v[tuple(idx)].ravel())
            if not np.isfinite(s) or s > 2 * hw[ax]:
                return None
            widths[ax] = SIGMA_TO_FWHM * s
            centre[ax] = p[ax] - hw[ax] + mu
        nearest = np.rint(centre).astype(int)
        if np.array_equal(nearest, p) or np.any(np.abs(nearest - p) > 1):
            break
        if np.any(nearest - hw < 0) or np.any(nearest + hw >= np.asarray(v.shape)):
            break
        p = nearest
    return widths, centre


# ---------------------------------------------------------------------------- lines and tubes
def line_fwhm(vol, point: Sequence[float], direction: Sequence[float],
              voxel_size: Sequence[float] = (1.0, 1.0, 1.0), half_length: float | None = None,
              coeffs: np.ndarray | None = None) -> float:
    """FWHM (µm) of the profile through ``point`` (voxels, z y x) along ``direction`` (physical).

    The profile is sampled every ``min(voxel_size) / 2`` µm over ``±half_length`` µm (default
    12 of the finest voxels) with cubic-spline interpolation. Pass ``coeffs =
    scipy.ndimage.spline_filter(vol, 3)`` to reuse the prefilter over many calls.
    """
    vs = np.asarray(voxel_size, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    step = float(vs.min()) / 2.0
    half_length = 12.0 * float(vs.min()) if half_length is None else float(half_length)
    t = np.arange(-half_length, half_length + step / 2, step)
    coords = np.asarray(point, dtype=np.float64)[:, None] + (d / vs)[:, None] * t[None, :]
    if coeffs is None:
        coeffs = ndimage.spline_filter(np.asarray(vol, dtype=np.float64), order=3)
    prof = ndimage.map_coordinates(coeffs, coords, order=3, prefilter=False, mode="nearest")
    w = fwhm_profile(prof, step)
    return w if w <= 2 * half_length else float("nan")


def _hessian_eig(smooth_sigma_vox: np.ndarray, gt: np.ndarray, pts: np.ndarray, vs: np.ndarray):
    """Eigen-decomposition of the physical-unit Hessian of the smoothed ``gt`` at ``pts``."""
    h = np.zeros((len(pts), 3, 3))
    for i in range(3):
        for j in range(i, 3):
            order = [0, 0, 0]
            order[i] += 1
            order[j] += 1
            d = ndimage.gaussian_filter(gt, smooth_sigma_vox, order=order)
            h[:, i, j] = h[:, j, i] = d[tuple(pts.T)] / (vs[i] * vs[j])
    return np.linalg.eigh(h)


def tube_widths(vol, gt, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), *, n_points: int = 200,
                sigma: float = 1.5, max_tilt: float = 0.3, half_length: float | None = None,
                seed: int = 0) -> dict:
    """Median axial and lateral FWHM (µm) of thin tubes in ``vol``, located with ``gt``.

    Centre-line points are voxels of the smoothed (``sigma`` voxels) ground truth above its
    Otsu threshold that are at least 0.8x their 3x3x3 neighbourhood maximum and are
    line-like (Hessian eigenvalues l1 <= l2 < 0, |l3| < 0.5 |l2|). The tube direction ``d`` is
    the l3 eigenvector; only points with ``|d_z| < max_tilt`` (tubes running nearly in the XY
    plane) are used, at most ``n_points`` of them (random, ``seed``). At each, ``vol`` is
    profiled perpendicular to the tube along the in-plane direction (lateral) and along z
    made perpendicular to ``d`` (axial), see :func:`line_fwhm`.

    Returns ``dict(axial, lateral, n)``.
    """
    g = np.asarray(gt, dtype=np.float64)
    v = np.asarray(vol, dtype=np.float64)
    if g.shape != v.shape:
        from ..core.errors import InputError
        raise InputError(f"the ground truth has shape {g.shape} but the volume has shape {v.shape}")
    vs = np.asarray(voxel_size, dtype=np.float64)
    sig = sigma * vs.min() / vs
    gs = ndimage.gaussian_filter(g, sig)
    cand = (gs > otsu_threshold(gs)) & (gs >= 0.8 * ndimage.maximum_filter(gs, size=3))
    pts = np.argwhere(cand)
    rng = np.random.default_rng(seed)
    if len(pts) > 20 * n_points:
        pts = pts[rng.choice(len(pts), 20 * n_points, replace=False)]
    res = {"axial": float("nan"), "lateral": float("nan"), "n": 0}
    if len(pts) == 0:
        return res
    lam, vec = _hessian_eig(sig, g, pts, vs)
    d = vec[:, :, 2]  # eigh sorts ascending: l3 is the largest (~0 along the tube)
    ok = (lam[:, 1] < 0) & (np.abs(lam[:, 2]) < 0.5 * np.abs(lam[:, 1])) & (np.abs(d[:, 0]) < max_tilt)
    pts, d = pts[ok], d[ok]
    if len(pts) > n_points:
        keep = rng.choice(len(pts), n_points, replace=False)
        pts, d = pts[keep], d[keep]
    coeffs = ndimage.spline_filter(v, order=3)
    ax_w, lat_w = [], []
    for p, dd in zip(pts, d, strict=True):
        lat = np.array([0.0, dd[2], -dd[1]])
        axial = np.array([1.0, 0.0, 0.0]) - dd[0] * dd
        wa = line_fwhm(v, p, axial, vs, half_length, coeffs)
        wl = line_fwhm(v, p, lat, vs, half_length, coeffs)
        if np.isfinite(wa) and np.isfinite(wl):
            ax_w.append(wa)
            lat_w.append(wl)
    if ax_w:
        res.update(axial=float(np.median(ax_w)), lateral=float(np.median(lat_w)), n=len(ax_w))
    return res


def tube_fwhm_mismatch(restored, gt, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), **kwargs) -> float:
    """Anisotropy of tube cross-sections in ``restored`` beyond that of ``gt``.

    Definition: ``|A_r / L_r - A_g / L_g|``, where ``A`` and ``L`` are the median axial and
    lateral tube FWHM from :func:`tube_widths` (same centre-line points, located on ``gt``)
    in the restored volume (r) and the ground truth (g). 0 when the restored tubes are as
    round as the true ones (exactly 0 for ``restored == gt``); about ``A_r / L_r - 1`` for an
    axially blurred volume (e.g. 1.2 when tubes are 2.2x wider along z). NaN if no tube
    point could be measured.
    """
    r = tube_widths(restored, gt, voxel_size, **kwargs)
    g = tube_widths(gt, gt, voxel_size, **kwargs)
    if r["n"] == 0 or g["n"] == 0:
        log.warning("tube_fwhm_mismatch: no tube cross-section could be fitted")
        return float("nan")
    return float(abs(r["axial"] / r["lateral"] - g["axial"] / g["lateral"]))
