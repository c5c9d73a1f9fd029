"""The single entry point for restoration, used by the CLI, ``demo``, ``bench`` and the GUI.

:func:`restore` validates the input, resolves the anisotropy factor and the PSF, trains (or
loads) the chosen method channel by channel, and returns a calibrated :class:`Volume` on the
output grid: plane ``k`` lies at input plane position ``k / F`` and z is sampled at ``dz / F``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import psf as psfmod
from .degradation import Degradation, estimate_degradation
from .engine.config import PSFSpec, check_factor
from .engine.events import EventCallback, ignore_events
from .errors import ConfigError, InputError
from .memory import peak_cuda_bytes, peak_rss_bytes
from .methods.base import Method
from .normalize import NORM_PERCENTILES, Normalizer  # noqa: F401 - NORM_PERCENTILES re-exported
from .volume import Volume

log = logging.getLogger(__name__)



@dataclass
class RestoreResult:
    """The restored volume and what it took to make it."""

    volume: Volume
    methods: list[Method]
    train_seconds: float = 0.0
    restore_seconds: float = 0.0
    peak_rss_bytes: int = 0
    peak_cuda_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> Method:
        return self.methods[0]


def resolve_factor(volume: Volume, factor: float | None) -> float:
    """The anisotropy factor: explicit, else dz/dxy from the (possibly overridden) metadata."""
    if factor is None:
        if not volume.metadata.get("calibrated", True):
            log.warning("%s has no voxel-size calibration; pass --voxel-size Z Y X or --factor F", volume.name)
        factor = volume.anisotropy
    return check_factor(float(factor))


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
        from .io import read_volume

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
        from .optics import optical_psf

        return optical_psf(kind, voxel_size=iso, **opts)
    fwhm = spec.fwhm_um if spec.kind == "gaussian" and spec.fwhm_um else (2 * dz, 2 * dy, 2 * dx)
    if spec.kind == "nyquist":
        log.info("assuming a Nyquist-sampled Gaussian PSF with FWHM %.3g x %.3g x %.3g µm (z, y, x)", *fwhm)
    return psfmod.gaussian_psf_from_fwhm(fwhm, iso)


def psf_axial_sigma(psf_iso: np.ndarray) -> float:
    """The axial blur beyond the lateral one of a 3D PSF (Gaussian sigma, lateral pixels), from its core's FWHMs."""
    fz, fy, fx = psfmod.psf_core_fwhm(psf_iso)
    sz, sxy = psfmod.fwhm_to_sigma(fz), psfmod.fwhm_to_sigma(0.5 * (fy + fx))
    return float(np.sqrt(max(sz * sz - sxy * sxy, 0.0)))


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


def model_kernel(psf_iso: np.ndarray) -> np.ndarray:
    """The 2D kernel (axial extent along rows) that turns a sharp lateral plane into an axial one."""
    return psfmod.isonet_kernels(psf_iso, mode="split", axis="y")


def normalize(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Percentile normalisation to about [0, 1] (:class:`Normalizer`); the array and ``(lo, hi)`` to undo it."""
    n = Normalizer.fit(x)
    return n.before(x), n.lo, n.hi


def restore(
    volume: Volume,
    method: str = "isonet",
    *,
    preset: str = "fast",
    factor: float | None = None,
    voxel_size: Sequence[float] | None = None,
    psf: PSFSpec | dict | None = None,
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    params: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    model_dir: str | Path | None = None,
    save_model: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    emit: EventCallback = ignore_events,
    should_stop: Callable[[], bool] | None = None,
    preview_position: tuple[int, int] | None = None,
    trust_torchscript: bool = False,
) -> RestoreResult:
    """Restore isotropic resolution of ``volume``.

    Parameters
    ----------
    volume
        ZYX, CZYX or TCZYX stack; every channel/time point is restored separately.
    method
        A registered method name (see :func:`isoapp.methods.available_methods`).
    preset
        ``fast`` (laptop CPU), ``balanced`` or ``quality`` (GPU).
    factor
        Anisotropy factor; default dz/dxy from the voxel size.
    voxel_size
        ``(z, y, x)`` µm overriding the file's metadata.
    psf
        A :class:`PSFSpec` (or dict) for methods that use a PSF; default ``auto``.
    model_dir
        Restore with a saved model instead of training.
    save_model
        Save the trained model(s) here (``channel_<c>`` sub-folders for multi-channel stacks).
    work_dir
        Checkpoint folder (``resume=True`` continues from it).
    emit, should_stop
        Event callback and cancellation poll (see :class:`RunContext`).
    preview_position
        ``(y, x)`` where live previews cut the xz/yz planes (the GUI's cursor).
    trust_torchscript
        With a bioimage.io package as ``model_dir``: allow running its TorchScript (code, in a
        child process) when isoapp cannot rebuild its network; refused otherwise.

    Returns
    -------
    RestoreResult
    """
    from .restorer import Restorer, prepare_volume

    volume = prepare_volume(volume, voxel_size).load()
    volume.check_finite()
    kwargs = dict(preset=preset, factor=factor, psf=psf, steps=steps, device=device, seed=seed, params=params,
                  train=train, work_dir=work_dir, resume=resume, emit=emit, should_stop=should_stop,
                  preview_position=preview_position)
    r = (Restorer.load(model_dir, trust_torchscript=trust_torchscript, **kwargs) if model_dir is not None
         else Restorer(method, **kwargs))
    if r.ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(r.ctx.device)
    if model_dir is None:
        r.fit(volume)
        if save_model is not None:
            r.save(save_model)
    out = r.predict(volume)
    peak_cuda = peak_cuda_bytes(r.ctx.device) or 0
    info = r.info()
    log.info("%s: trained %.1f s, restored %.1f s, output %s", info["method"], r.train_seconds, r.predict_seconds,
             out.shape)
    return RestoreResult(out, [r.methods[c] for c in sorted(r.methods)], r.train_seconds, r.predict_seconds,
                         peak_rss_bytes(), peak_cuda, info)
