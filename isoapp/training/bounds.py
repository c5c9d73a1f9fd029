"""Bounds on every number a model folder, a bioimage.io package or a checkpoint may carry.

A saved model is data from disk, possibly from someone else: a ``factor`` of 1000, an axial blur
of 5e7 pixels or a checkpoint at step -5 would make a run write a huge file, exhaust memory or
misbehave long after the checks of the command line. These checks run when a model or checkpoint
is loaded, before any work, and use the same limits as the command line (:data:`MAX_FACTOR` of
``--factor``, the Params bounds of each method) plus the limits below. Each failure is one
:class:`~isoapp.core.errors.ModelError` line that names the file, the value and what to do.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..core.errors import ModelError
from .config import MAX_FACTOR, RunConfig

log = logging.getLogger(__name__)

#: the largest axial blur (Gaussian sigma, lateral pixels) a model may carry; the blind estimate stops
#: at 3 z steps (30 px at the largest factor), a measured PSF rarely exceeds a few z steps
MAX_AXIAL_SIGMA_PX = 64.0
#: training settings: the largest values a saved configuration may hold
MAX_STEPS = 10_000_000
MAX_BATCH = 4096
MAX_PATCH = 4096
#: prediction tiles and the network's receptive-field radius / size divisor (pixels)
MAX_TILE = 16384
MAX_RADIUS = 4096
MAX_DIVISOR = 1024
#: voxel sizes (µm) and noise-model coefficients (normalised intensity units)
MAX_VOXEL_UM = 1.0e4
MAX_NOISE = 1.0e3


def _bad(where: str, what: str, value: Any, allowed: str) -> ModelError:
    return ModelError(f"{where}: {what} is {value!r}, outside {allowed}; the model was altered or is not from "
                      "this isoapp: train a new model or export it again")


def check_number(value: Any, lo: float, hi: float, where: str, what: str, *, integer: bool = False,
                 lo_open: bool = False) -> float:
    """``value`` as a number within ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), else a one-line ModelError."""
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise _bad(where, what, value, f"{kind} in [{lo:g}, {hi:g}]")
    v = float(value)
    if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise _bad(where, what, value, f"{'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return v


def check_run_config(cfg: RunConfig, where: str) -> RunConfig:
    """Check every number of a loaded :class:`RunConfig` and its parts against each other.

    Parameters
    ----------
    cfg
        The validated configuration (pydantic has checked types and lower bounds).
    where
        The file it came from, named in the message.
    """
    check_number(cfg.factor, 1.0, MAX_FACTOR, where, "factor", lo_open=True)
    if len(cfg.voxel_size) != 3:
        raise _bad(where, "voxel_size", list(cfg.voxel_size), "three sizes (z, y, x)")
    for axis, v in zip("zyx", cfg.voxel_size, strict=True):
        check_number(v, 0.0, MAX_VOXEL_UM, where, f"voxel_size {axis} (µm)", lo_open=True)
    tr = cfg.train
    check_number(tr.steps, 1, MAX_STEPS, where, "train.steps", integer=True)
    check_number(tr.batch_size, 1, MAX_BATCH, where, "train.batch_size", integer=True)
    check_number(tr.patch_size, 8, MAX_PATCH, where, "train.patch_size", integer=True)
    check_number(tr.warmup_steps, 0, MAX_STEPS, where, "train.warmup_steps", integer=True)
    check_number(tr.checkpoint_every, 1, MAX_STEPS, where, "train.checkpoint_every", integer=True)
    check_number(tr.val_every, 1, MAX_STEPS, where, "train.val_every", integer=True)
    check_number(tr.lr, 0.0, 10.0, where, "train.lr", lo_open=True)
    if cfg.psf.fwhm_um is not None:
        for axis, v in zip("zyx", cfg.psf.fwhm_um, strict=True):
            check_number(v, 0.0, MAX_VOXEL_UM, where, f"psf.fwhm_um {axis}", lo_open=True)
    tile = cfg.params.get("tile")
    if tile is not None:
        check_number(tile, 32, MAX_TILE, where, "params.tile", integer=True)
    if len(cfg.input_shape) > 5 or any(not isinstance(n, int) or n < 0 for n in cfg.input_shape):
        raise _bad(where, "input_shape", list(cfg.input_shape), "up to five non-negative sizes")
    if cfg.degradation is not None:
        check_degradation(cfg.degradation, cfg.factor, where)
    return cfg


def check_degradation(deg: dict[str, Any], factor: float, where: str) -> None:
    """The saved blur and noise model: bounded, and for the model's own factor."""
    if not isinstance(deg, dict):
        raise _bad(where, "degradation", type(deg).__name__, "a mapping")
    f = check_number(deg.get("factor", factor), 1.0, MAX_FACTOR, where, "degradation.factor", lo_open=True)
    if abs(f - factor) > 1e-6 * factor:
        raise ModelError(f"{where}: degradation.factor {f:g} disagrees with the model's factor {factor:g}; the model "
                         "was altered: train a new model or export it again")
    check_number(deg.get("axial_sigma_px", 0.0), 0.0, MAX_AXIAL_SIGMA_PX, where, "degradation.axial_sigma_px")
    check_number(deg.get("noise_gain", 0.0), 0.0, MAX_NOISE, where, "degradation.noise_gain")
    check_number(deg.get("noise_offset", 0.0), -MAX_NOISE, MAX_NOISE, where, "degradation.noise_offset")
    check_number(deg.get("lateral_um", 1.0), 0.0, MAX_VOXEL_UM, where, "degradation.lateral_um", lo_open=True)


def check_checkpoint_step(step: Any, steps: int, where: str) -> int:
    """The step a checkpoint says it reached: an integer in ``[0, MAX_STEPS]``, else a one-line ModelError.

    A step beyond this run's ``steps`` is legitimate (a run resumed with fewer steps is already
    done): it is capped at ``steps``.
    """
    if hasattr(step, "item") and getattr(step, "ndim", 1) == 0:  # a 0-d tensor or array
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEPS:
        raise ModelError(f"the checkpoint {where} says it reached step {step!r}, outside 0..{MAX_STEPS}; it was "
                         "altered or belongs to another run: delete that file, then run again")
    return min(int(step), int(steps))
