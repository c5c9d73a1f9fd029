"""The Method interface and registry, and saving/loading trained models.

A method is one file in ``isoapp/methods/`` that subclasses :class:`Method`, decorates itself
with :func:`register`, and uses the shared engine (``train_loop``, ``PatchSampler``,
``predict_tiled``). :func:`isoapp.restore.restore` does the rest: channels, normalisation, the
output grid and calibration.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..degradation import Degradation
from ..degrade import output_length
from ..engine.checkpoint import load_safe, save_atomic
from ..engine.config import RunConfig, TrainConfig, validated
from ..engine.context import RunContext
from ..errors import ConfigError, ModelError

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Method]] = {}
_BUILTIN = ("baselines", "isonet", "selfnet", "otcyclegan", "selfvision", "auto")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Preset(BaseModel):
    """A method's preset: overrides of the training settings and parameters, and where they came from.

    ``note`` says how the preset departs from the method's paper; it is shown wherever the preset
    is picked (CLI, GUI) and saved in the run's config. ``provenance`` maps each tuned constant to
    the case and command it was measured with.
    """

    model_config = ConfigDict(extra="forbid")

    train: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    note: str = ""
    provenance: dict[str, str] = Field(default_factory=dict)


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
    #: restores single axial planes from their samples (:meth:`restore_sampled`): the held-out check applies
    heldout_check: ClassVar[bool] = False

    def __init__(self, config: RunConfig, psf: np.ndarray | None = None,
                 degradation: Degradation | None = None) -> None:
        self.config = config
        self.params = validated(self.Params, config.params, f"{self.name} parameters")
        self.psf = psf  # 3D, on an isotropic grid of the lateral pixel size (uses_psf methods)
        if degradation is None and config.degradation:
            degradation = Degradation.model_validate(config.degradation)
        self.degradation = degradation  # the stack's blur and noise model (isoapp.degradation)
        self.nets: dict[str, torch.nn.Module] = {}
        self.fitted = not self.trainable

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        """Train on ``vol`` (ZYX, normalised). Must use ``train_loop`` for events/checkpoints."""

    @abstractmethod
    def predict(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        """Restore ``vol`` (ZYX, normalised) onto the output grid."""

    def restore_sampled(self, samples: np.ndarray, ctx: RunContext) -> np.ndarray | None:
        """Restore ``(N, m, W)`` axial planes sampled every ``F`` rows onto ``output_length(m, F)`` rows.

        Used by the held-out check (:mod:`isoapp.heldout`); None where the method cannot restore
        single planes (3D networks, 3D deconvolution).
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


def _load_builtin() -> None:
    import importlib

    for mod in _BUILTIN:
        try:
            importlib.import_module(f"isoapp.methods.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"isoapp.methods.{mod}":
                raise


def available_methods() -> list[str]:
    """Names of every registered method."""
    _load_builtin()
    return sorted(_REGISTRY)


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
    config = RunConfig.load(directory)
    cls = get_method(config.method)
    method = cls(config, psf=psf)
    method.load_weights(directory)
    return method
