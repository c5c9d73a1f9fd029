"""What a run needs before a method starts: the anisotropy factor, the user's PSF and the stack's degradation model.

Every entry point (the :class:`~isoapp.run.restorer.Restorer`, hence the CLI, the GUI, napari,
``demo`` and ``bench``) resolves them here, so a factor or a PSF means the same everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..core.errors import ConfigError, InputError
from ..core.volume import Volume
from ..physics import psf as psfmod
from ..physics.degradation import Degradation, estimate_degradation
from ..physics.psf import psf_axial_sigma
from ..training.config import MAX_FACTOR, PSFSpec, check_factor

log = logging.getLogger(__name__)


def resolve_factor(volume: Volume, factor: float | None) -> float:
    """The anisotropy factor: explicit, else dz/dxy from the (possibly overridden) metadata."""
    if factor is None:
        if not volume.metadata.get("calibrated", True):
            log.warning("%s has no voxel-size calibration; pass --voxel-size Z Y X or --factor F", volume.name)
        factor = volume.anisotropy
    return check_factor(float(factor))


PSF_KINDS = ("auto", "nyquist", "gaussian", "optical", "file")


def psf_spec(kind: str = "auto", *, fwhm_um: Sequence[float] | None = None, optics: str | dict | None = None,
             path: str | None = None, where: str = "--psf-optics") -> dict:
    """The PSF settings as :class:`~isoapp.training.config.PSFSpec` takes them: the CLI's options, the GUI's
    fields and napari's widgets all build them here.

    ``optics`` is an optics line (``widefield,na=1.0,wavelength=0.52``; parsed by
    :func:`~isoapp.physics.optics.parse_optics`, errors naming ``where``) or an already-parsed dict.
    """
    if kind == "gaussian":
        return {"kind": "gaussian", "fwhm_um": tuple(float(v) for v in fwhm_um)}
    if kind == "optical":
        from ..physics.optics import parse_optics

        return {"kind": "optical", "optics": parse_optics(optics, where) if isinstance(optics, str) else dict(optics)}
    if kind == "file":
        return {"kind": "file", "path": str(path) if path else None}
    if kind in ("auto", "nyquist"):
        return {"kind": kind}
    raise ConfigError(f"unknown PSF kind {kind!r}; choose one of {', '.join(PSF_KINDS)}")


def sizing_factor(volume: Volume, factor: float | None = None, voxel_size: Sequence[float] | None = None) -> float:
    """The factor a run will use, for sizing memory and disk before any work.

    ``factor`` when given, else dz/dxy of ``voxel_size`` (the user's override) or of the file's
    calibration; clamped to [1, MAX_FACTOR], and 1 when not a number (:func:`resolve_factor`
    refuses such a factor later, with what to pass).
    """
    if factor is None:
        dz, dy, dx = voxel_size if voxel_size is not None else volume.voxel_size
        factor = dz / (0.5 * (dy + dx)) if dy + dx > 0 else 1.0
    f = float(factor)
    return min(max(f, 1.0), MAX_FACTOR) if np.isfinite(f) else 1.0


def optics_from_file(spec: PSFSpec, volume: Volume) -> PSFSpec:
    """``--psf-optics metadata``: the spec with the optics the file's metadata gives (one line when it gives too few)."""
    if spec.kind != "optical" or (spec.optics or {}).get("kind") != "metadata":
        return spec
    from ..physics.optics import optics_from_metadata

    optics = optics_from_metadata(volume.metadata.get("optics"), volume.name or "the stack")
    log.info("optics from %s's metadata: %s", volume.name or "the stack",
             ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in optics.items()))
    return PSFSpec(kind="optical", optics=optics)


def resolve_psf(spec: PSFSpec, voxel_size: Sequence[float], factor: float) -> np.ndarray | None:
    """A 3D PSF on the isotropic grid of the lateral pixel size, from ``spec``; None for ``auto``.

    ``auto`` is estimated from the stack (:func:`resolve_degradation`). ``nyquist`` assumes a
    Gaussian whose FWHM is two voxels laterally and two z steps axially (a Nyquist-sampled
    microscope, FWHM = (2 dz, 2 dxy, 2 dxy)); many stacks are undersampled in z rather than
    blurred, so this is an explicit choice only.
    """
    if spec.kind == "auto":
        return None
    dz, dy, dx = voxel_size
    dxy = 0.5 * (dy + dx)
    iso = (dxy, dxy, dxy)
    if spec.kind == "file":
        if not spec.path:
            raise ConfigError("a PSF file was asked for but no path given (--psf FILE)")
        from ..data.io import read_volume

        pv = read_volume(spec.path)
        if pv.axes != "ZYX":
            raise InputError(f"the PSF file {spec.path} has axes {pv.axes}; a single-channel 3D (Z, Y, X) PSF "
                             "is required")
        arr = psfmod.prepare_psf(np.asarray(pv.data))
        if pv.metadata.get("calibrated", True):
            cal = pv.voxel_size
        else:
            log.warning("the PSF file %s has no calibration; assuming the stack's voxel size", spec.path)
            cal = (dz, dy, dx)
        if not np.allclose(cal, voxel_size, rtol=0.01):
            log.info("the PSF file %s has voxel size %s µm and the stack %s µm: resampled it to the stack's grid",
                     spec.path, "x".join(f"{v:.4g}" for v in cal), "x".join(f"{v:.4g}" for v in voxel_size))
        out = psfmod.resample_psf_isotropic(arr, cal)  # isotropic at the PSF's own x pixel
        if abs(cal[2] - dxy) > 0.01 * dxy:
            from scipy import ndimage

            out = np.clip(ndimage.zoom(out, cal[2] / dxy, order=1), 0, None)
            if out.shape[0] % 2 == 0:
                out = np.pad(out, [(0, 1)] * 3)
        return (out / out.sum()).astype(np.float32)
    if spec.kind == "optical":
        opts = dict(spec.optics or {})
        kind = opts.pop("kind", "widefield")
        from ..physics.optics import optical_psf

        return optical_psf(kind, voxel_size=iso, **opts)
    fwhm = spec.fwhm_um if spec.kind == "gaussian" and spec.fwhm_um else (2 * dz, 2 * dy, 2 * dx)
    if spec.kind == "nyquist":
        log.info("assuming a Nyquist-sampled Gaussian PSF with FWHM %.3g x %.3g x %.3g µm (z, y, x)", *fwhm)
    return psfmod.gaussian_psf_from_fwhm(fwhm, iso)


def resolve_degradation(xn: np.ndarray, spec: PSFSpec, psf_iso: np.ndarray | None, factor: float,
                        voxel_size: Sequence[float], *, seed: int, name: str, required: bool) -> Degradation | None:
    """The stack's degradation model: blur from the user's PSF or estimated, noise estimated.

    ``required``: the method needs it (trains, or deconvolves with an estimated PSF); a stack
    whose blur cannot be estimated is then refused with what to pass instead. A user PSF that
    disagrees with the estimate by more than 2x gets a warning showing both.
    """
    dxy = 0.5 * (voxel_size[1] + voxel_size[2])
    try:
        est = estimate_degradation(xn, factor, lateral_um=dxy, name=name)
    except InputError:
        if required and psf_iso is None:
            raise
        if psf_iso is None:
            return None
        est = None
    if psf_iso is None:
        return est
    sigma = psf_axial_sigma(psf_iso)
    model = Degradation(factor=factor, axial_sigma_px=sigma, blur_source=spec.kind, lateral_um=dxy,
                        noise_gain=est.noise_gain if est else 0.0, noise_offset=est.noise_offset if est else 0.0,
                        noise_source="estimated" if est else "none")
    if est is not None and est.axial_sigma_px > 0 and not 0.5 <= sigma / est.axial_sigma_px <= 2.0:
        haze = ("; large objects under a widefield PSF's defocus haze also look more blurred than its core"
                if est.axial_sigma_px > sigma else "")
        log.warning("the PSF you gave has an axial blur of sigma %.2f px beyond the lateral one, but the stack "
                    "looks blurred by sigma %.2f px (estimated from its own planes); check the PSF and the voxel "
                    "size%s", sigma, est.axial_sigma_px, haze)
    return model
