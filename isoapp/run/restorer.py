"""The front door, split: a :class:`Restorer` fits one model per channel, then predicts many times.

``fit`` trains on a stack (or on a bounded, foreground-rich region of a stack larger than the
training budget), with the degradation estimated from that region and the normaliser from a
bounded sample of the stack; ``predict`` restores a stack in memory; ``predict_to`` restores one
block by block straight to an OME-Zarr or TIFF on disk, locally or on a Dask cluster, resumable.
One trained Restorer restores many blocks, files and time points (like careamics' ``CAREamist``).
:func:`isoapp.run.restore.restore` is ``fit`` + ``predict`` for stacks that fit in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError, InputError, IsoappError, ModelError
from ..core.volume import Volume
from ..data.io.lazy import SAMPLE_BUDGET_BYTES, TRAIN_BUDGET_BYTES, bounded, fit_normalizer, training_region
from ..data.normalize import Normalizer
from ..interop.bioimageio import export_model, is_package, package_model
from ..methods.base import Method, build_config, default_method, get_method, load_model
from ..methods.thinned import thin_restorer
from ..physics.degradation import Degradation
from ..physics.kernels import model_kernel
from ..quality.axial import axial_check, axial_unavailable
from ..quality.consistency import consistency
from ..quality.heldout import evaluate
from ..training.config import PSFSpec, validated
from ..training.context import RunContext
from ..training.events import EventCallback, StageEvent, ignore_events
from .resolve import optics_from_file, psf_axial_sigma, resolve_degradation, resolve_factor, resolve_psf

log = logging.getLogger(__name__)

#: ``check``: which self-checks ``fit`` runs. ``axial`` trains the method a second time, on every
#: other recorded plane, and scores it against the withheld ones (:mod:`isoapp.quality.axial`: about
#: twice the training time, independent of the degradation model); ``lateral`` scores held-out
#: lateral planes degraded by the estimated model (:mod:`isoapp.quality.heldout`: cheap, optimistic).
CHECKS = ("both", "axial", "lateral", "none")
DEFAULT_CHECK = "both"


def prepare_volume(volume: Volume, voxel_size: Sequence[float] | None = None) -> Volume:
    """Apply a voxel-size override and refuse stacks too small to restore (reads no pixels)."""
    if voxel_size is not None:
        volume = volume.with_data(volume.data, voxel_size=tuple(float(v) for v in voxel_size))
        volume.metadata["calibrated"] = True
    if volume.spatial_shape[0] < 3:
        raise InputError(f"{volume.name} has {volume.spatial_shape[0]} plane(s); at least 3 z planes are needed "
                         "to restore the axial resolution")
    if min(volume.spatial_shape[1:]) < 8:
        raise InputError(f"{volume.name} is only {volume.spatial_shape[1:]} pixels laterally; at least 8x8 needed")
    return volume


class Restorer:
    """Fit, save, load and predict with one method per channel.

    Parameters follow :func:`isoapp.run.restore.restore`; ``train_budget_bytes`` bounds the region
    a method trains on and ``sample_budget_bytes`` the sample the normaliser is taken from.
    ``check`` picks the self-checks (:data:`CHECKS`; default ``both``: the axial check is the one a
    wrong model cannot fool, the lateral one costs little beside it). ``residual_map``: keep the
    data-consistency residual of the first channel (noise sigmas, input grid) as :attr:`residual`.
    """

    def __init__(self, method: str | None = None, *, preset: str = "fast", factor: float | None = None,
                 voxel_size: Sequence[float] | None = None, psf: PSFSpec | dict | None = None, steps: int | None = None, device: str = "auto", seed: int = 0,
                 params: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
                 work_dir: str | Path | None = None, resume: bool = False, emit: EventCallback = ignore_events,
                 should_stop: Callable[[], bool] | None = None, preview_position: tuple[int, int] | None = None,
                 train_budget_bytes: int = TRAIN_BUDGET_BYTES, sample_budget_bytes: int = SAMPLE_BUDGET_BYTES,
                 check: str = DEFAULT_CHECK, residual_map: bool = False) -> None:
        if check not in CHECKS:
            raise ConfigError(f"unknown check {check!r}; use one of {', '.join(CHECKS)}")
        self.check, self.keep_residual = check, bool(residual_map)
        self.residual: np.ndarray | None = None
        self.method_name = method or default_method()
        self.voxel_size = None if voxel_size is None else tuple(float(v) for v in voxel_size)
        self.preset, self.steps, self.params, self.train = preset, steps, params, train
        self.factor_arg = factor
        self.spec = psf if isinstance(psf, PSFSpec) else validated(PSFSpec, dict(psf or {}), "PSF settings")
        self.seed, self.device = seed, device
        self.work_dir = Path(work_dir) if work_dir else None
        self.ctx = RunContext(device=device, seed=seed, emit=emit, should_stop=should_stop or (lambda: False),
                              work_dir=self.work_dir, resume=resume, preview_position=preview_position)
        self.train_budget, self.sample_budget = int(train_budget_bytes), int(sample_budget_bytes)
        self.methods: dict[int, Method] = {}  # per channel; time points share their channel's model
        self.model_dir: Path | None = None  # the saved model this Restorer was loaded from
        self.saved_dir: Path | None = None  # where save() last wrote this Restorer's models
        self.factor: float | None = None
        self.quality: dict[str, Any] = {}
        self.train_seconds = self.predict_seconds = 0.0
        self.user_psf: np.ndarray | None = None

    @classmethod
    def open(cls, method: str | None = None, *, model_dir: str | Path | None = None, trust_torchscript: bool = False,
             **kwargs: Any) -> Restorer:
        """A Restorer holding the saved model in ``model_dir`` when given, else a new one for ``method``."""
        if model_dir is not None:
            return cls.load(model_dir, trust_torchscript=trust_torchscript, **kwargs)
        return cls(method, **kwargs)

    # ------------------------------------------------------------------ shared steps
    def validate(self, volume: Volume, *, load: bool = False) -> Volume:
        """``volume`` with the voxel-size override applied, refused when too small (and loaded and checked
        for NaN/Inf when ``load``). Every entry point calls it; ``fit`` and ``predict`` call it themselves."""
        volume = prepare_volume(volume, self.voxel_size)
        if load:
            volume = volume.load()
            volume.check_finite()
        return volume

    def ensure_fitted(self, volume: Volume, save_model: str | Path | None = None) -> Restorer:
        """Train on ``volume`` unless this Restorer holds a saved model; then save to ``save_model`` if given."""
        if self.model_dir is None:
            self.fit(volume)
            if save_model is not None:
                self.save(save_model)
        return self

    def resolve(self, volume: Volume) -> None:
        """Fix the factor (checked against a loaded model's) and the user's PSF for ``volume``."""
        if self.model_dir is not None:
            cfg = next(iter(self.methods.values())).config
            factor = self.factor_arg
            if factor is None and volume.metadata.get("calibrated", True) is False:
                factor = cfg.factor
            F = resolve_factor(volume, factor)
            if abs(cfg.factor - F) > 1e-3 * F:
                raise ModelError(f"the model in {self.model_dir} was trained for factor {cfg.factor:g} but this "
                                 f"stack needs {F:g}; pass --factor {cfg.factor:g} if that is right, or train a new "
                                 "model")
            self.factor = F
            self.spec = optics_from_file(self.spec, volume)
            self.user_psf = resolve_psf(self.spec, volume.voxel_size, F)
            for m in self.methods.values():
                if self.user_psf is not None and m.uses_psf:
                    m.psf = self.user_psf
            return
        self.factor = resolve_factor(volume, self.factor_arg)
        self.spec = optics_from_file(self.spec, volume)
        self.user_psf = resolve_psf(self.spec, volume.voxel_size, self.factor)
        if self.user_psf is not None and self.user_psf.ndim != 3:
            raise InputError(f"the PSF must be 3D (Z, Y, X), got shape {self.user_psf.shape}")

    def normalizer(self, zyx: Volume) -> Normalizer:
        """The frozen normaliser of one channel: percentiles of a bounded sample (all of a small stack)."""
        return fit_normalizer(bounded(zyx.data), self.sample_budget, seed=self.seed)

    # ------------------------------------------------------------------ fit
    def fit(self, volume: Volume) -> Restorer:
        """Train one model per channel on ``volume`` (ZYX/CZYX/TCZYX; time point 0 trains).

        Stacks larger than the training budget train on one region of it (:func:`training_region`).
        """

        if self.model_dir is not None:
            raise ModelError(f"this Restorer holds the saved model {self.model_dir}; create a new one to train")
        volume = self.validate(volume)
        self.resolve(volume)
        F = self.factor
        cls = get_method(self.method_name)
        ctx = self.ctx
        n_ch = volume.n_channels
        for c in range(n_ch):
            zyx = volume.channel(c, 0)
            tag = f"channel_{c}" if n_ch > 1 else ""
            norm = self.normalizer(zyx)
            box = training_region(bounded(zyx.data), cls.training_budget(self.train_budget, F, self.params))
            region = np.asarray(bounded(zyx.data)[box], np.float32)
            zyx.with_data(region).check_finite()
            xn = norm.before(region)
            del region  # one region-sized copy fewer for the rest of the fit (its checks peak here)
            deg = resolve_degradation(xn, self.spec, self.user_psf, F, volume.voxel_size, seed=self.seed,
                                      name=f"{volume.name} {tag}".strip(), required=cls.trainable or cls.uses_psf)
            psf_m = self.user_psf if self.user_psf is not None else (deg.psf() if deg is not None else None)
            cfg = build_config(self.method_name, preset=self.preset, factor=F, voxel_size=volume.voxel_size,
                               steps=self.steps, params=self.params, train=self.train, psf=self.spec.model_dump(),
                               seed=self.seed, device=self.device, input_name=volume.name,
                               input_shape=tuple(zyx.shape), degradation=deg.model_dump() if deg is not None else None)
            m = cls(cfg, psf=psf_m if cls.uses_psf else None, degradation=deg)
            if self.work_dir is not None:
                ctx.work_dir = self.work_dir / tag if tag else self.work_dir
            check = (self.check in ("lateral", "both") and m.heldout_check and deg is not None
                     and psf_m is not None)
            held = m.heldout_planes(xn) if check else ()
            ctx.heldout = held if m.trainable else ()  # training leaves them out
            if m.trainable:
                ctx.send(StageEvent("train", f"training {m.name} on {volume.name} {tag}".strip()))
                t0 = time.perf_counter()
                m.fit(xn, ctx)
                self.train_seconds += time.perf_counter() - t0
            m.fitted = True
            ho = None
            if held:
                ho = evaluate(m, xn[list(held)], model_kernel(psf_m), deg, ctx, seed=self.seed)
                shown = getattr(m, "chosen", None) or m  # auto: the method it chose
                if ho is not None and ho["psnr_gain_db"] <= 0 and shown.name not in ("linear", "cubic"):
                    log.warning("%s does not beat linear interpolation on held-out planes of this stack "
                                "(%+.2f dB); check the result, or use --method auto or cubic", m.name,
                                ho["psnr_gain_db"])
            m.config.heldout = ho
            ax = self._axial(m, xn, ctx) if c == 0 and self.check in ("axial", "both") else None
            m.config.axial = ax
            m.config.normalizer = norm.to_dict()
            if not self.quality:
                self.quality = {"degradation": deg.summary() if deg is not None else None, "heldout": ho,
                                "axial": ax}
            self.methods[c] = m
        return self

    def _axial(self, m: Method, xn: np.ndarray, ctx: RunContext) -> dict[str, Any] | None:
        """The axial check of the fitted ``m`` on ``xn`` (auto: its chosen method's, reused when auto ran it)."""
        shown = getattr(m, "chosen", None) or m
        done = getattr(m, "axial_results", {}).get(shown.name)
        if done is not None:
            return done
        why = axial_unavailable(xn.shape[0])
        if why:
            log.info("%s", why)
            return {"skipped": why}
        ctx.send(StageEvent("train", f"axial check: training {shown.name} on every other plane"))
        t0 = time.perf_counter()
        user_sigma = psf_axial_sigma(self.user_psf) if self.user_psf is not None else None
        try:
            res = axial_check(xn, self.factor, thin_restorer(shown.name, shown.config, shown.psf, shown.degradation,
                                                              ctx), user_sigma_px=user_sigma)
        except IsoappError as exc:  # e.g. twice the factor is beyond what the method accepts
            res = {"skipped": f"no axial check: {exc}"}
            log.info("%s", res["skipped"])
        self.train_seconds += time.perf_counter() - t0
        return res

    # ------------------------------------------------------------------ save / load
    def save(self, directory: str | Path) -> Path:
        """Save every channel's model (``channel_<c>`` sub-folders for several channels)."""
        directory = Path(directory)
        self.saved_dir = directory
        for c, m in self.methods.items():
            m.save(directory / f"channel_{c}" if len(self.methods) > 1 else directory)
        return directory

    @classmethod
    def load(cls, model_dir: str | Path, *, trust_torchscript: bool = False, **kwargs: Any) -> Restorer:
        """A Restorer holding the saved model(s) in ``model_dir`` (a folder or a bioimage.io package).

        ``trust_torchscript`` lets a package whose network isoapp cannot rebuild run its TorchScript
        (code, in a child process); without it such packages are refused.
        """
        self = cls("linear", **kwargs)
        self.model_dir = Path(model_dir)
        self.trust_torchscript = bool(trust_torchscript)
        m = self._load_channel(0)
        self.method_name = m.name
        self.methods[0] = m
        return self

    def _load_channel(self, c: int) -> Method:
        sub = self.model_dir / f"channel_{c}"
        mdir = sub if sub.is_dir() else self.model_dir
        trust = getattr(self, "trust_torchscript", False)
        m = package_model(mdir, trust_torchscript=trust) if is_package(mdir) else load_model(mdir, psf=self.user_psf)
        if m.config.input_shape and len(m.config.input_shape) != 3:
            raise ModelError(f"the model in {mdir} is not a 3D restoration model")
        if m.psf is None and m.degradation is not None:
            m.psf = m.degradation.psf()
        if not self.quality and m.config.degradation:
            self.quality = {"degradation": Degradation.model_validate(m.config.degradation).summary(),
                            "heldout": m.config.heldout, "axial": m.config.axial}
        return m

    def method_for(self, c: int, n_ch: int) -> Method:
        """The model of channel ``c`` (loaded on first use for a saved multi-channel model)."""
        if c not in self.methods:
            if self.model_dir is None:
                raise ModelError(f"no model for channel {c}: fit the Restorer on a stack with {n_ch} channels")
            self.methods[c] = self._load_channel(c)
        return self.methods[c]

    # ------------------------------------------------------------------ predict
    def predict(self, volume: Volume) -> Volume:
        """Restore ``volume`` in memory; the result is on the output grid (z step dz/F)."""
        volume = self.validate(volume)
        if self.factor is None:
            self.resolve(volume)
        n_ch = volume.n_channels
        outs: dict[tuple[int, int], np.ndarray] = {}
        for t, c, zyx in volume.iter_channels():
            m = self.method_for(c, n_ch)
            tag = f"channel_{c}" if n_ch > 1 else ""
            x = np.asarray(zyx.data, dtype=np.float32)
            zyx.with_data(x).check_finite()
            norm = self.normalizer(zyx.with_data(x))
            self.ctx.send(StageEvent("restore", f"restoring {volume.name} {tag}".strip()))
            t0 = time.perf_counter()
            xn = norm.before(x)
            y = m.predict(xn, self.ctx)
            self.predict_seconds += time.perf_counter() - t0
            if (t, c) == (0, 0):
                self._consistency(m, xn, y)
            outs[(t, c)] = norm.after(y)
        first = outs[(0, 0)]
        if volume.axes == "ZYX":
            data = first
        else:
            data = np.zeros((volume.n_timepoints, n_ch) + first.shape, np.float32)
            for (t, c), blk in outs.items():
                data[t, c] = blk
            if volume.axes == "CZYX":
                data = data[0]
        m0 = self.method_for(0, n_ch)
        return Volume(data, axes=volume.axes, voxel_size=m0.output_voxel_size(volume.voxel_size), path=None,
                      name=f"{volume.name}_{m0.name}",
                      metadata={"method": m0.name, "factor": self.factor, "source": str(volume.path or "")})

    def _consistency(self, m: Method, xn: np.ndarray, y: np.ndarray) -> None:
        """The data-consistency report of channel 0's restoration ``y`` of ``xn`` (normalised), into :attr:`quality`."""
        if m.degradation is None or y.shape[0] == xn.shape[0]:
            return
        sigma = psf_axial_sigma(self.user_psf) if self.user_psf is not None else None
        deg = m.degradation.model_copy(update={"factor": self.factor})
        rep, self.residual = consistency(xn, y, deg, sigma_px=sigma, pred=m.model_planes(y, np.arange(xn.shape[0]) * self.factor),
                                         residual_map=self.keep_residual)
        self.quality["consistency"] = rep

    def predict_to(self, volume: Volume, output: str | Path, **kwargs: Any):
        """Restore ``volume`` block by block into ``output`` (see :func:`isoapp.run.blockwise.restore_blockwise`)."""
        from .blockwise import restore_blockwise

        return restore_blockwise(self, self.validate(volume), output, **kwargs)

    def export(self, output: str | Path, volume: Volume | None = None, **kwargs: Any) -> Path:
        """Write the saved model as a bioimage.io package (``.zip``; see :func:`~isoapp.interop.bioimageio.export_model`).

        The package's test output is this model's own restoration of ``volume`` (a phantom when None).
        """
        model_dir = self.model_dir or self.saved_dir
        if model_dir is None:
            raise ModelError("only a saved model can be exported: call save(DIR) first, or Restorer.load(DIR)")
        spec = self.methods[min(self.methods)].config.psf

        def restore_fn(v: Volume) -> np.ndarray:
            return Restorer.load(model_dir, psf=spec, device="cpu").predict(v).data

        return export_model(model_dir, output, volume, restore_fn=restore_fn, **kwargs)

    def info(self) -> dict[str, Any]:
        """What the run was, for summaries: method, factor, device, parameters, quality and auto's choice."""
        m0 = self.methods[min(self.methods)]
        return {"method": m0.name, "factor": self.factor, "device": str(self.ctx.device),
                "parameters": m0.parameter_count(), "preset": m0.config.preset,
                "steps": m0.config.train.steps if m0.trainable else 0, "preset_note": m0.config.preset_note,
                **{k: v for k, v in self.quality.items() if v is not None}, **m0.selection()}
