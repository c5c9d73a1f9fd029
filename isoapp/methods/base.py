"""The Method interface and registry, and saving/loading trained models.

A method is one file in ``isoapp/methods/`` that subclasses :class:`Method`, decorates itself
with :func:`register`, and uses the shared engine (``train_loop``, ``PatchSampler``,
``predict_tiled``). :func:`isoapp.run.restore.restore` does the rest: channels, normalisation, the
output grid and calibration.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ConfigError, InputError, ModelError
from ..physics.degradation import Degradation
from ..physics.forward import output_length
from ..quality.heldout import choose_heldout, plane_signal
from ..training.checkpoint import load_safe, save_atomic
from ..training.config import RunConfig, TrainConfig, validated
from ..training.context import RunContext
from ..training.events import ignore_events

if TYPE_CHECKING:
    from ..training.tiling import BlockGeometry

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Method]] = {}


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Preset(BaseModel):
    """A method's preset: overrides of the training settings and parameters, and where they came from.

    ``note`` says how the preset departs from the method's paper; it is shown wherever the preset
    is picked (CLI, GUI) and saved in the run's config. ``provenance`` links (a path relative to the
    repository, e.g. ``benchmarks/results/presets.md#isonet-fast``) to where the preset's tuned constants
    are measured: the case, the command and the figures, keyed by the commit that recorded them.
    """

    model_config = ConfigDict(extra="forbid")

    train: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    note: str = ""
    provenance: str = ""


@dataclass(frozen=True)
class TimeModel:
    """How long a method takes, as measured for its ``fast`` preset on a reference CPU.

    The GUI's estimate scales these by the work of the chosen configuration (batch x patch area or
    volume x width^2 relative to the fast preset) and replaces them by this machine's measured speed
    (earlier runs, then the running one) as soon as it has one. Reference: 2 shared CPU cores, one
    torch thread (see ``isoapp/gui/estimate.py``); figures are upper bounds on faster machines.

    Attributes
    ----------
    s_per_step
        Seconds per training-loop iteration of the fast preset.
    s_per_voxel
        Seconds per output voxel when restoring with the fast preset (all orientations).
    loops_per_step
        Training-loop iterations per configured step (e.g. 2 for two alternating stages).
    width_param
        The Params field whose square scales the cost (e.g. ``n_filters``), if any.
    gpu_speedup
        Rough CUDA speed-up over the reference CPU, used until a GPU run was measured.
    """

    s_per_step: float = 0.0
    s_per_voxel: float = 1e-8
    loops_per_step: float = 1.0
    width_param: str | None = None
    gpu_speedup: float = 20.0


class Method(ABC):
    """A restoration method trained on (or applied to) the single stack it restores.

    Subclasses set the class attributes and implement :meth:`fit` and :meth:`predict`. Arrays
    are ZYX float32, percentile-normalised by the caller; :meth:`predict` returns the volume on the
    output grid (``output_length(nz, factor)`` planes unless :meth:`output_shape` says otherwise).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    #: preset name -> :class:`Preset` (plain dicts are validated into Presets when the method registers)
    presets: ClassVar[dict[str, Preset]] = {}
    trainable: ClassVar[bool] = True
    uses_psf: ClassVar[bool] = False
    #: restores held-out lateral planes from their samples (:meth:`restore_sampled`): the held-out check applies
    heldout_check: ClassVar[bool] = False
    #: the check holds out one contiguous slab of planes, restored as a small stack (3D networks need
    #: 3D context); False: single planes spread over the stack (:mod:`isoapp.quality.heldout`)
    heldout_slab: ClassVar[bool] = False
    #: a name for people (menus, reports); ``name`` is the id used in files and on the command line
    label: ClassVar[str] = ""
    #: 2 (the network sees planes) or 3 (it sees 3D crops): sets the cost model and the minimum stack size
    dims: ClassVar[int] = 2
    #: Params fields shown as their own controls in the GUI and listed by the CLI (the rest: "Parameters")
    options: ClassVar[tuple[str, ...]] = ()
    time_model: ClassVar[TimeModel] = TimeModel()
    #: menu order (lower first); the GUI's default is the method named "auto" when one is registered
    menu_rank: ClassVar[int] = 50
    #: order in napari's method list (lower first, then by name)
    napari_rank: ClassVar[int] = 100
    #: order in ``bench``'s default method list (None: benched only when named)
    bench_rank: ClassVar[int | None] = None
    #: bench entries (``name:variant``) run beside this method by default, to compare it with
    bench_companions: ClassVar[tuple[str, ...]] = ()
    #: :meth:`block_geometry` never returns None: the method always restores block by block
    block_capable: ClassVar[bool] = False
    #: a bioimage.io package (:mod:`isoapp.interop.bioimageio`) reproduces its prediction
    exportable: ClassVar[bool] = False
    #: with ``exportable``: the attribute holding the plane-wise network the package runs (None: interpolation only)
    export_net: ClassVar[str | None] = None

    def __init__(self, config: RunConfig, psf: np.ndarray | None = None,
                 degradation: Degradation | None = None) -> None:
        self.config = config
        self.params = validated(self.Params, config.params, f"{self.name} parameters")
        self.psf = psf  # 3D, on an isotropic grid of the lateral pixel size (uses_psf methods)
        if degradation is None and config.degradation:
            degradation = Degradation.model_validate(config.degradation)
        self.degradation = degradation  # the stack's blur and noise model (isoapp.physics.degradation)
        self.nets: dict[str, torch.nn.Module] = {}
        self.fitted = not self.trainable

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        """Train on ``vol`` (ZYX, normalised). Must use ``train_loop`` for events/checkpoints."""

    @abstractmethod
    def predict(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        """Restore ``vol`` (ZYX, normalised) onto the output grid."""

    def predict_region(self, vol: np.ndarray, ctx: RunContext, crop: tuple[slice, ...] | None) -> np.ndarray:
        """``predict(vol)[crop]`` (block-wise runs); plane-wise nets override it to skip work outside the crop."""
        out = self.predict(vol, ctx)
        return out if crop is None else out[tuple(crop)]

    def restore_sampled(self, samples: np.ndarray, ctx: RunContext) -> np.ndarray | None:
        """Restore ``(N, m, W)`` axial planes sampled every ``F`` rows onto ``output_length(m, F)`` rows.

        Used by the held-out check (:mod:`isoapp.quality.heldout`); None where the method has no check.
        With ``heldout_slab`` the ``N`` planes are consecutive (a slab, z on the lateral grid): seen
        from the side, with the sampled axis as z, they are a small stack, restored by :meth:`predict`.
        """
        if not self.heldout_slab:
            return None
        emit, ctx.emit = ctx.emit, ignore_events  # the check's restoration is not the run's
        try:
            out = self.predict(np.ascontiguousarray(samples.transpose(1, 0, 2)), ctx)
        finally:
            ctx.emit = emit
        return np.ascontiguousarray(out.transpose(1, 0, 2))

    def heldout_planes(self, vol: np.ndarray) -> tuple[int, ...]:
        """The lateral planes (z indices of ``vol``) the held-out check restores and training leaves out: spread
        over the stack, or (``heldout_slab``) one slab leaving :meth:`train_depth` planes to train on; empty: no room."""
        if not self.heldout_slab:
            return tuple(choose_heldout(vol.shape[0]))
        try:
            keep = self.train_depth(vol.shape)
        except InputError:  # too small to train at all: fit says why
            return ()
        held = tuple(choose_heldout(vol.shape[0], slab=keep, signal=plane_signal(vol)))
        if not held:
            log.warning("%s: no held-out check: its training crops span %d of the stack's %d planes, which leaves "
                        "no room for a held-out slab", self.name, keep, vol.shape[0])
        return held

    def train_depth(self, shape: tuple[int, int, int]) -> int:
        """Planes of a ``shape`` stack that one training crop spans (``heldout_slab``); InputError: too small."""
        return int(shape[0])

    @classmethod
    def training_budget(cls, budget: int, factor: float, params: dict[str, Any] | None = None) -> int:
        """Bytes of float32 training region for a run whose training budget is ``budget``.

        The region a large stack trains on (:func:`isoapp.data.io.lazy.training_region`) is the budget
        divided by the copies of it the method holds while training; one by default.
        """
        return int(budget)

    def block_geometry(self) -> BlockGeometry | None:
        """How :mod:`isoapp.run.blocks` may split prediction into blocks; None: only whole volumes.

        A method whose ``predict`` is local (each output voxel depends on input within a fixed
        radius) returns its halo and alignment, and block-wise output then equals whole-volume
        output. Methods with whole-volume steps (FFT deconvolution, histogram matching) return None.
        """
        return None

    # ------------------------------------------------------------------ defaults
    @property
    def factor(self) -> float:
        return self.config.factor

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Output grid for an input of ``shape``: z gets ``floor((n-1)F)+1`` planes."""
        return (output_length(shape[0], self.factor), shape[1], shape[2])

    def output_voxel_size(self, voxel_size: tuple[float, float, float]) -> tuple[float, float, float]:
        dz, dy, dx = voxel_size
        return (dz / self.factor, dy, dx)

    def parameter_count(self) -> int:
        return sum(p.numel() for net in self.nets.values() for p in net.parameters())

    def model_planes(self, out: np.ndarray, positions: np.ndarray) -> np.ndarray | None:
        """Recorded planes at output-grid ``positions`` that this method's own 3D-PSF model predicts from ``out``."""
        return None  # the checks then re-blur ``out`` along z (a laterally deconvolved output needs the PSF)

    def report(self) -> dict[str, Any]:
        """Method-specific figures for ``bench`` and logs (e.g. the FWHM of a learned PSF)."""
        return {"parameters": self.parameter_count()}

    def selection(self) -> dict[str, Any]:
        """What a method that chooses among others chose, and why (``auto``); empty otherwise."""
        return {}

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors besides network weights to save with the model (e.g. a learned PSF)."""
        return {}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`extra_state` saved (nothing by default)."""

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``weights.pt`` (state dicts only) to ``directory``."""
        if not self.fitted:
            raise ModelError(f"the {self.name} model has not been trained yet; nothing to save")
        directory = Path(directory)
        self.config.save(directory)
        if self.nets or self.extra_state():
            payload = {"nets": {k: {n: t.detach().cpu() for n, t in v.state_dict().items()}
                                for k, v in self.nets.items()},
                       "extra": {k: v.detach().cpu() for k, v in self.extra_state().items()}}
            save_atomic(payload, directory / "weights.pt")
        log.info("saved %s model to %s", self.name, directory)
        return directory

    def load_weights(self, directory: str | Path) -> None:
        path = Path(directory) / "weights.pt"
        if not self.nets and not path.exists():
            self.fitted = True
            return
        payload = load_safe(path)
        try:
            for k, net in self.nets.items():
                net.load_state_dict(payload["nets"][k])
            self.load_extra_state(payload.get("extra", {}))
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"the weights in {path} do not fit a {self.name} network with these parameters "
                             f"({str(exc).splitlines()[0]}); train a new model") from exc
        self.fitted = True


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``, its presets validated once."""
    presets = {}
    for name, p in cls.presets.items():
        p = p if isinstance(p, Preset) else Preset.model_validate(p)
        validated(TrainConfig, p.train, f"{cls.name} preset {name} training settings")
        validated(cls.Params, p.params, f"{cls.name} preset {name} parameters")
        presets[name] = p
    cls.presets = presets
    _REGISTRY[cls.name] = cls
    return cls


_LOADED = False


def _load_builtin() -> None:
    """Import every module of this package once, so a new method is one new file."""
    global _LOADED
    if _LOADED:
        return
    import importlib
    import pkgutil

    package = __name__.rsplit(".", 1)[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _LOADED = True


def available_methods() -> list[str]:
    """Names of every registered method."""
    _load_builtin()
    return sorted(_REGISTRY)


def method_label(name: str) -> str:
    """The human-readable name of method ``name`` (its id when it has no label)."""
    cls = get_method(name)
    return cls.label or cls.name


def is_exportable(name: str) -> bool:
    """Whether method ``name`` has a bioimage.io export (False for an unknown name)."""
    _load_builtin()
    cls = _REGISTRY.get(name)
    return cls is not None and cls.exportable


def block_methods() -> list[str]:
    """The methods that always restore block by block (``block_capable``), in menu order."""
    names = available_methods()
    return sorted((n for n in names if get_method(n).block_capable), key=lambda n: (get_method(n).menu_rank, n))


def default_method() -> str:
    """The method a new user starts with: ``auto`` when registered, else the first in menu order."""
    names = available_methods()
    if "auto" in names:
        return "auto"
    return min(names, key=lambda n: (get_method(n).menu_rank, n))


def option_choices(cls: type[Method], option: str) -> tuple[Any, ...] | None:
    """The allowed values of a Params field with a ``Literal`` or ``bool`` type, else None."""
    from typing import Literal, get_args, get_origin

    field = cls.Params.model_fields[option]
    ann = field.annotation
    if get_origin(ann) is Literal:
        return tuple(get_args(ann))
    if ann is bool:
        return (False, True)
    return None


def capabilities(name: str) -> dict[str, Any]:
    """What a method can do, for the GUI, the CLI and reports (read from its class)."""
    cls = get_method(name)
    return {"name": cls.name, "label": cls.label or cls.name, "description": cls.description,
            "dims": cls.dims, "trainable": cls.trainable, "uses_psf": cls.uses_psf,
            "options": {o: {"default": cls.Params.model_fields[o].default,
                            "choices": option_choices(cls, o),
                            "help": cls.Params.model_fields[o].description or ""} for o in cls.options}}


def get_method(name: str) -> type[Method]:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_config(method: str, *, preset: str = "fast", factor: float, voxel_size, steps: int | None = None,
                 params: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
                 **fields: Any) -> RunConfig:
    """Merge the method's preset with user overrides into a validated :class:`RunConfig`."""
    cls = get_method(method)
    if preset not in ("fast", "balanced", "quality"):
        raise ConfigError(f"unknown preset {preset!r}; use fast, balanced or quality")
    p = cls.presets.get(preset, Preset())
    overrides = {**(train or {}), **({"steps": steps} if steps is not None else {})}
    tr = {**p.train, **overrides}
    train_cfg = validated(TrainConfig, tr, "training settings")
    prm = {**p.params, **(params or {})}
    validated(cls.Params, prm, f"{method} parameters")
    from .. import __version__

    return validated(RunConfig, dict(method=method, preset=preset, factor=factor, voxel_size=tuple(voxel_size),
                                     train=train_cfg.model_dump(), params=prm, isoapp_version=__version__,
                                     preset_note=p.note, train_overrides=overrides, **fields), "run configuration")


def load_model(directory: str | Path, psf: np.ndarray | None = None) -> Method:
    """Load a model saved with :meth:`Method.save` (weights with ``weights_only=True``).

    The degradation model saved with it (``config.degradation``) comes back with it.
    """
    from ..training.bounds import check_run_config

    config = check_run_config(RunConfig.load(directory), str(Path(directory) / "config.json"))
    cls = get_method(config.method)
    method = cls(config, psf=psf)
    method.load_weights(directory)
    return method
