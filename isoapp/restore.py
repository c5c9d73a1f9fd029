"""The single entry point for restoration, used by the CLI, ``demo``, ``bench`` and the GUI.

:func:`restore` validates the input, resolves the anisotropy factor and the PSF, trains (or
loads) the chosen method channel by channel, and returns a calibrated :class:`Volume` on the
output grid: plane ``k`` lies at input plane position ``k / F`` and z is sampled at ``dz / F``.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import psf as psfmod
from .degradation import Degradation, estimate_degradation
from .engine.config import PSFSpec, check_factor, validated
from .engine.context import RunContext
from .engine.events import EventCallback, StageEvent, ignore_events
from .errors import ConfigError, InputError, ModelError
from .heldout import choose_heldout, evaluate
from .methods.base import Method, build_config, get_method, load_model
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
        return psfmod.optical_psf(kind, voxel_size=iso, **opts)
    fwhm = spec.fwhm_um if spec.kind == "gaussian" and spec.fwhm_um else (2 * dz, 2 * dy, 2 * dx)
    if spec.kind == "nyquist":
        log.info("assuming a Nyquist-sampled Gaussian PSF with FWHM %.3g x %.3g x %.3g µm (z, y, x)", *fwhm)
    return psfmod.gaussian_psf_from_fwhm(fwhm, iso)


def psf_axial_sigma(psf_iso: np.ndarray) -> float:
    """The axial blur beyond the lateral one of a 3D PSF (Gaussian sigma, lateral pixels)."""
    fz, fy, fx = psfmod.psf_fwhm(psf_iso)
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
        est = estimate_degradation(xn, factor, lateral_um=dxy, seed=seed, name=name)
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
        log.warning("the PSF you gave has an axial blur of sigma %.2f px beyond the lateral one, but the stack "
                    "looks blurred by sigma %.2f px (estimated from its own planes); check the PSF and the voxel "
                    "size", sigma, est.axial_sigma_px)
    return model


def model_kernel(psf_iso: np.ndarray) -> np.ndarray:
    """The 2D kernel (axial extent along rows) that turns a sharp lateral plane into an axial one."""
    return psfmod.isonet_kernels(psf_iso, mode="split", axis="y")


def normalize(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Percentile normalisation to about [0, 1] (:class:`Normalizer`); the array and ``(lo, hi)`` to undo it."""
    n = Normalizer.fit(x)
    return n.before(x), n.lo, n.hi


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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

    Returns
    -------
    RestoreResult
    """
    if voxel_size is not None:
        volume = volume.with_data(volume.data, voxel_size=tuple(float(v) for v in voxel_size))
        volume.metadata["calibrated"] = True
    if volume.spatial_shape[0] < 3:
        raise InputError(f"{volume.name} has {volume.spatial_shape[0]} plane(s); at least 3 z planes are needed "
                         "to restore the axial resolution")
    if min(volume.spatial_shape[1:]) < 8:
        raise InputError(f"{volume.name} is only {volume.spatial_shape[1:]} pixels laterally; at least 8x8 needed")
    volume = volume.load()
    volume.check_finite()

    saved_cfg = None
    if model_dir is not None:
        from .engine.config import RunConfig
        from .export import is_package, package_model

        first = Path(model_dir) / "channel_0" if (Path(model_dir) / "channel_0").is_dir() else Path(model_dir)
        saved_cfg = package_model(model_dir).config if is_package(model_dir) else RunConfig.load(first)
        method = saved_cfg.method
        if factor is None and volume.metadata.get("calibrated", True) is False:
            factor = saved_cfg.factor
    F = resolve_factor(volume, factor)
    if saved_cfg is not None and abs(saved_cfg.factor - F) > 1e-3 * F:
        raise ModelError(f"the model in {model_dir} was trained for factor {saved_cfg.factor:g} but this stack "
                         f"needs {F:g}; pass --factor {saved_cfg.factor:g} if that is right, or train a new model")
    cls = get_method(method)
    spec = psf if isinstance(psf, PSFSpec) else validated(PSFSpec, dict(psf or {}), "PSF settings")
    user_psf = resolve_psf(spec, volume.voxel_size, F)
    if user_psf is not None and user_psf.ndim != 3:
        raise InputError(f"the PSF must be 3D (Z, Y, X), got shape {user_psf.shape}")

    ctx = RunContext(device=device, seed=seed, emit=emit, should_stop=should_stop or (lambda: False),
                     work_dir=Path(work_dir) if work_dir else None, resume=resume,
                     preview_position=preview_position)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    out_blocks: dict[tuple[int, int], np.ndarray] = {}
    methods: list[Method] = []
    quality: dict[str, Any] = {}
    t_train = t_pred = 0.0
    n_ch = volume.n_channels
    for t, c, zyx in volume.iter_channels():
        tag = f"channel_{c}" if n_ch > 1 else ""
        x = np.asarray(zyx.data, dtype=np.float32)
        norm = Normalizer.fit(x)
        xn = norm.before(x)
        if model_dir is not None:
            mdir = Path(model_dir) / tag if tag and (Path(model_dir) / tag).is_dir() else Path(model_dir)
            m = package_model(mdir) if is_package(mdir) else load_model(mdir, psf=user_psf)
            if m.config.input_shape and len(m.config.input_shape) != 3:
                raise ModelError(f"the model in {mdir} is not a 3D restoration model")
            if m.psf is None and m.degradation is not None:
                m.psf = m.degradation.psf()
            if not quality and m.config.degradation:
                quality = {"degradation": Degradation.model_validate(m.config.degradation).summary(),
                           "heldout": m.config.heldout}
        elif t > 0 and methods and len(methods) == n_ch:
            m = methods[c]  # time points reuse the channel's model
        else:
            deg = resolve_degradation(xn, spec, user_psf, F, volume.voxel_size, seed=seed,
                                      name=f"{volume.name} {tag}".strip(), required=cls.trainable or cls.uses_psf)
            psf_m = user_psf if user_psf is not None else (deg.psf() if deg is not None else None)
            cfg = build_config(method, preset=preset, factor=F, voxel_size=volume.voxel_size, steps=steps,
                               params=params, train=train, psf=spec.model_dump(), seed=seed, device=device,
                               input_name=volume.name, input_shape=tuple(x.shape),
                               degradation=deg.model_dump() if deg is not None else None)
            m = cls(cfg, psf=psf_m if cls.uses_psf else None, degradation=deg)
            if ctx.work_dir is not None and tag:
                ctx.work_dir = Path(work_dir) / tag
            check = m.heldout_check and deg is not None and psf_m is not None
            ctx.heldout = tuple(choose_heldout(xn.shape[0])) if check and m.trainable else ()
            if m.trainable:
                ctx.send(StageEvent("train", f"training {m.name} on {volume.name} {tag}".strip()))
                t0 = time.perf_counter()
                m.fit(xn, ctx)
                m.fitted = True
                t_train += time.perf_counter() - t0
            ho = None
            if check:
                planes = xn[list(ctx.heldout)] if ctx.heldout else xn[choose_heldout(xn.shape[0])]
                ho = evaluate(m, planes, model_kernel(psf_m), deg, ctx, seed=seed)
                if ho is not None and ho["psnr_gain_db"] <= 0 and m.name not in ("linear", "cubic"):
                    log.warning("%s does not beat linear interpolation on held-out planes of this stack "
                                "(%+.2f dB); check the result, or use --method auto or cubic", m.name,
                                ho["psnr_gain_db"])
            m.config.heldout = ho
            if not quality:
                quality = {"degradation": deg.summary() if deg is not None else None, "heldout": ho}
            if save_model is not None:
                m.save(Path(save_model) / tag if tag else Path(save_model))
        if m not in methods:
            methods.append(m)
        ctx.send(StageEvent("restore", f"restoring {volume.name} {tag}".strip()))
        t0 = time.perf_counter()
        y = m.predict(xn, ctx)
        t_pred += time.perf_counter() - t0
        out_blocks[(t, c)] = norm.after(y)

    first = out_blocks[(0, 0)]
    if volume.axes == "ZYX":
        data = first
    else:
        data = np.zeros((volume.n_timepoints, n_ch) + first.shape, np.float32)
        for (t, c), blk in out_blocks.items():
            data[t, c] = blk
        if volume.axes == "CZYX":
            data = data[0]
    m0 = methods[0]
    out = Volume(data, axes=volume.axes, voxel_size=m0.output_voxel_size(volume.voxel_size), path=None,
                 name=f"{volume.name}_{m0.name}", metadata={"method": m0.name, "factor": F, "source": str(volume.path or "")})
    peak_cuda = int(torch.cuda.max_memory_allocated(ctx.device)) if ctx.device.type == "cuda" else 0
    info = {"method": m0.name, "factor": F, "device": str(ctx.device), "parameters": m0.parameter_count(),
            "preset": m0.config.preset, "steps": m0.config.train.steps if m0.trainable else 0,
            "preset_note": m0.config.preset_note,
            **{k: v for k, v in quality.items() if v is not None}, **m0.selection()}
    log.info("%s: trained %.1f s, restored %.1f s, output %s", m0.name, t_train, t_pred, out.shape)
    return RestoreResult(out, methods, t_train, t_pred, _peak_rss(), peak_cuda, info)
