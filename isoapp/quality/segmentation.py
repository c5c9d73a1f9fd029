"""Nucleus segmentation and the ISBI SEG score, for the phantom benchmarks (IsoNet's protocol).

Thresholding and the seeded watershed are scikit-image's (``threshold_otsu``,
``peak_local_max``, ``watershed``); only the SEG score, a few lines of counting, is written here.
:mod:`isoapp.quality.metrics` and :mod:`isoapp.quality.fwhm` both import from this module, which imports neither.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from scipy import ndimage

from ..core.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["otsu_threshold", "segment", "seg_score"]


def otsu_threshold(x, bins: int = 256) -> float:
    """Otsu's threshold of ``x`` over a ``bins`` histogram (``skimage.filters.threshold_otsu``)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(x, dtype=np.float64), nbins=bins))


def segment(vol, *, threshold: float | Literal["otsu"] = "otsu", min_size: int = 20, sigma: float = 1.0,
            split: bool = True, min_distance: int = 3) -> np.ndarray:
    """Label objects (nuclei) as IsoNet did for SEG: threshold, fill holes, split touching ones.

    Steps: Gaussian smoothing (``sigma`` voxels), threshold (Otsu, or a given value),
    ``binary_fill_holes``, removal of components below ``min_size`` voxels, and with ``split``
    scikit-image's watershed (full connectivity) of the inverted distance transform inside the
    mask, seeded at the local maxima (``peak_local_max``) of the distance transform smoothed by
    one voxel, at least ``min_distance`` apart and deeper than one voxel (scikit-image's
    documented recipe). A component without a seed stays whole. Returns int32 labels 1..n
    (0 background).
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    x = np.asarray(vol, dtype=np.float32)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma)
    t = otsu_threshold(x) if isinstance(threshold, str) else float(threshold)
    mask = ndimage.binary_fill_holes(x > t)
    lab, n = ndimage.label(mask)
    if n == 0:
        return lab.astype(np.int32)
    sizes = np.bincount(lab.ravel())
    mask = (sizes >= min_size)[lab] & mask
    if not split:
        lab, _ = ndimage.label(mask)
        return lab.astype(np.int32)
    lab, _ = ndimage.label(mask)
    edt = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(ndimage.gaussian_filter(edt, 1.0), min_distance=min_distance, threshold_abs=1.0,
                           labels=lab, exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    ws = watershed(-edt, markers, mask=mask, connectivity=mask.ndim).astype(np.int32)
    rest, n_rest = ndimage.label(mask & (ws == 0))  # components without a seed stay whole
    if n_rest:
        ws[rest > 0] = rest[rest > 0] + ws.max()
    sizes = np.bincount(ws.ravel())
    ws[(sizes < min_size)[ws]] = 0
    ids = np.unique(ws)
    ids = ids[ids != 0]
    relabel = np.zeros(int(ws.max()) + 1, dtype=np.int32)
    relabel[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return relabel[ws]


def seg_score(gt_labels, pred_labels) -> float:
    """ISBI cell-tracking SEG: mean Jaccard index over ground-truth objects.

    A GT object R matches the prediction object S with ``|R ∩ S| > 0.5 |R|`` (at most one
    can); its score is ``|R ∩ S| / |R ∪ S|``, or 0 without a match. Label 0 is background.
    Returns ``nan`` when the GT holds no object.
    """
    gt = np.asarray(gt_labels)
    pr = np.asarray(pred_labels)
    if gt.shape != pr.shape:
        raise InputError(f"the reference has shape {gt.shape} but the image has shape {pr.shape}; "
                         "metrics need both on the same grid")
    gt = gt.astype(np.int64, copy=False).ravel()
    pr = pr.astype(np.int64, copy=False).ravel()
    gt_ids, gt_inv = np.unique(gt, return_inverse=True)
    pr_ids, pr_inv = np.unique(pr, return_inverse=True)
    gt_size = np.bincount(gt_inv)
    pr_size = np.bincount(pr_inv)
    pairs = gt_inv.astype(np.int64) * len(pr_ids) + pr_inv
    pair_ids, inter = np.unique(pairs, return_counts=True)
    g, p = pair_ids // len(pr_ids), pair_ids % len(pr_ids)
    keep = (gt_ids[g] != 0) & (pr_ids[p] != 0) & (inter > 0.5 * gt_size[g])
    n_gt = int(np.count_nonzero(gt_ids != 0))
    if n_gt == 0:
        log.warning("seg_score: the ground truth holds no object")
        return float("nan")
    j = inter[keep] / (gt_size[g[keep]] + pr_size[p[keep]] - inter[keep])
    return float(j.sum() / n_gt)
