"""Validated run configuration (pydantic v2), saved as ``config.json`` beside each model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

Preset = Literal["fast", "balanced", "quality"]
MAX_FACTOR = 10.0
MAX_CONFIG_BYTES = 4 * 2**20


class TrainConfig(BaseModel):
    """Optimisation settings shared by every trainable method."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1000, ge=1, description="optimisation steps (per stage for multi-stage methods)")
    batch_size: int = Field(16, ge=1)
    patch_size: int = Field(64, ge=8, description="lateral patch edge (px); 3D methods use it for all axes")
    lr: float = Field(4e-4, gt=0)
    lr_min_fraction: float = Field(0.05, ge=0, le=1, description="cosine schedule ends at lr * this")
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(200, ge=1)
    checkpoint_seconds: float = Field(30.0, ge=0, description="also checkpoint when this much time passed "
                                                              "since the last checkpoint (0: by steps only)")
    val_every: int = Field(100, ge=1)
    preview_every: int = Field(50, ge=0, description="0 disables live previews")
    foreground_fraction: float = Field(0.9, ge=0, le=1, description="share of patches drawn from foreground")
    amp: bool = True


class PSFSpec(BaseModel):
    """Where the PSF comes from. FWHMs are in µm, (z, y, x)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["auto", "nyquist", "gaussian", "optical", "file"] = Field(
        "auto", description="auto: estimate the axial blur from the stack; nyquist: assume a Gaussian of FWHM "
                            "2 voxels along each axis; gaussian/optical/file: the user's PSF")
    fwhm_um: tuple[float, float, float] | None = None
    path: str | None = None
    optics: dict[str, Any] | None = None  # kind, na, wavelength_um, refractive_index ...

    @field_validator("fwhm_um")
    @classmethod
    def _positive(cls, v):
        if v is not None and not all(np.isfinite(x) and x > 0 for x in v):
            raise ValueError("PSF FWHM values must be positive (z, y, x) in µm")
        return v


class RunConfig(BaseModel):
    """Everything needed to reproduce a run; written beside the trained model."""

    model_config = ConfigDict(extra="forbid")

    method: str
    preset: Preset = "fast"
    factor: float = Field(..., gt=1.0, le=MAX_FACTOR)
    voxel_size: tuple[float, float, float]
    psf: PSFSpec = Field(default_factory=PSFSpec)
    seed: int = 0
    device: str = "auto"
    train: TrainConfig = Field(default_factory=TrainConfig)
    params: dict[str, Any] = Field(default_factory=dict)
    isoapp_version: str = ""
    input_name: str = ""
    input_shape: tuple[int, ...] = ()
    degradation: dict[str, Any] | None = Field(None, description="the stack's blur and noise model "
                                               "(isoapp.physics.degradation.Degradation) the model was trained with")
    heldout: dict[str, Any] | None = Field(None, description="held-out lateral-plane check (isoapp.quality.heldout)")
    axial: dict[str, Any] | None = Field(None, description="axial check against withheld recorded planes "
                                         "(isoapp.quality.axial)")
    preset_note: str = Field("", description="how the preset departs from the method's paper")
    normalizer: dict[str, float] | None = Field(None, description="the frozen intensity normaliser (lo, hi) of "
                                                "the stack the model was trained on, from a bounded sample")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="training settings the user set "
                                            "over the preset's (auto passes them on to its candidates)")

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "config.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> RunConfig:
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise ModelError(f"{directory} holds no config.json; --model must point at a folder written by "
                             "--save-model")
        if path.stat().st_size > MAX_CONFIG_BYTES:  # isoapp writes a few KB: refuse before reading
            raise ModelError(f"{path} is {path.stat().st_size / 2**20:.1f} MiB, over the {MAX_CONFIG_BYTES // 2**20} "
                             "MiB of an isoapp model config; point --model at a folder written by --save-model")
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            raise ModelError(f"{path} is not a valid isoapp model config: {_first_error(exc)}") from exc


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}"
    return str(exc)


def validated(model: type[BaseModel], data: dict, what: str) -> BaseModel:
    """Validate ``data`` into ``model``, turning pydantic errors into a one-line ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {_first_error(exc)}") from exc


def check_factor(factor: float) -> float:
    """Validate the anisotropy factor with messages a user can act on."""
    if not np.isfinite(factor):
        raise ConfigError(f"the anisotropy factor {factor} is not a number; pass --factor F")
    if factor <= 1.0:
        raise ConfigError(
            f"the anisotropy factor is {factor:g} (dz/dxy <= 1): the stack is already isotropic, nothing to "
            "restore; if the metadata is wrong pass --voxel-size Z Y X or --factor F"
        )
    if factor > MAX_FACTOR:
        raise ConfigError(
            f"the anisotropy factor {factor:g} is over {MAX_FACTOR:g}: too few axial samples to restore; "
            "check the voxel size (--voxel-size Z Y X) or pass --factor"
        )
    return float(factor)
