"""Is this a widefield stack whose haze a 3D PSF can remove? The evidence ``auto`` uses to pick ``deconv``.

Two independent signs, both needed:

1. **The PSF is widefield-like.** A widefield PSF spreads light with defocus but keeps it: every
   plane of the PSF holds about the same energy, whereas confocal, two-photon and light-sheet PSFs
   section optically, so their plane energy falls off with defocus. The measure is the PSF's plane
   energy two core axial FWHMs from focus over the in-focus plane's: 0.98–1.00 for computed
   widefield PSFs (NA 0.5–1.4, voxels 0.1 and 0.2 µm), 0.001–0.09 for confocal, two-photon and
   light-sheet ones and 0 for a Gaussian (measured with :func:`isoapp.physics.optics.optical_psf`;
   the figures are in benchmarks/results/deconv.md). :data:`WIDEFIELD_PSF` sits halfway.
2. **The stack's planes carry haze.** The stack's own blind estimate of its axial blur
   (:func:`isoapp.physics.degradation.estimate_axial_sigma`, the Gaussian whose neighbour-plane
   correlation matches the stack's) is at least the PSF core's: defocus haze makes neighbouring
   planes more alike than the core alone explains (on the independent generator's widefield
   phantoms the ratio is 1.3–3.0, on its confocal ones 1.3–1.8). A ratio below 1 means the PSF
   is wider than anything the stack shows: a wrong PSF or voxel size, and no deconvolution.

The lateral check cannot see haze (held-out lateral planes carry it in their reference too), so
this is not a quality score: it says whether the physics applies. The restoration's own
data-consistency report (``chi2/N`` through the PSF) then says whether the result fits.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..physics.degradation import Degradation, estimate_axial_sigma
from ..physics.psf import psf_axial_sigma, psf_core_fwhm

log = logging.getLogger(__name__)

#: plane energy at two core FWHMs from focus, over the focal plane's, above which a PSF is widefield-like
WIDEFIELD_PSF = 0.5
#: the stack's blind axial blur over the PSF core's, at or above which its planes carry the PSF's haze
HAZE_RATIO = 1.0


def defocus_energy(psf_iso: np.ndarray) -> float:
    """Plane energy of a 3D PSF two core axial FWHMs from focus (or at its last plane) over the focal plane's."""
    psf = np.asarray(psf_iso, np.float64)
    prof = psf.sum(axis=(1, 2))
    c = len(prof) // 2
    d = min(int(round(2.0 * psf_core_fwhm(psf)[0])), c)
    if d < 1 or prof[c] <= 0:
        return 0.0
    return float(0.5 * (prof[c - d] + prof[c + d]) / prof[c])


def widefield_evidence(vol: np.ndarray, factor: float, psf_iso: np.ndarray | None,
                       degradation: Degradation | None) -> dict[str, Any]:
    """Whether deconvolution with ``psf_iso`` applies to ``vol`` (normalised ZYX), with the figures and one reason."""
    if psf_iso is None or psf_iso.ndim != 3 or min(psf_iso.shape[1:]) < 3:
        return {"applies": False, "reason": "no 3D PSF was given"}
    energy = defocus_energy(psf_iso)
    out: dict[str, Any] = {"psf_defocus_energy": round(energy, 3)}
    if energy < WIDEFIELD_PSF:
        out.update(applies=False, reason=f"the PSF sections optically (plane energy two FWHMs from focus {energy:.2f} "
                   f"of the focal plane's, below {WIDEFIELD_PSF}): not a widefield PSF")
        return out
    core = psf_axial_sigma(psf_iso)
    stack = estimate_axial_sigma(vol, factor, degradation)
    ratio = stack / core if core > 0 else float("inf")
    out.update(psf_core_sigma_px=round(core, 3), stack_sigma_px=round(stack, 3), haze_ratio=round(ratio, 3))
    if ratio < HAZE_RATIO:
        out.update(applies=False, reason=f"the PSF is widefield-like but wider than the stack's planes show (their axial "
                   f"blur sigma {stack:.2f} px, the PSF core's {core:.2f} px): check the PSF and the voxel size")
    else:
        out.update(applies=True, reason=f"a widefield PSF (plane energy two FWHMs from focus {energy:.2f} of the focal "
                   f"plane's) and planes hazier than its core (axial blur sigma {stack:.2f} px against {core:.2f} px)")
    return out
