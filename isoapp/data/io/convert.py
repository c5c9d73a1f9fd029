"""Output dtype conversion: how restored (float) intensities become uint16/uint8, one rule per source.

A restoration's conversion is fixed from its *input* before any block exists
(:func:`restoration_conversion`): in memory and block by block alike, an integer input keeps its
intensity units (rounded, clipped), a float input is mapped linearly from its sampled range
widened by 10 % (restorations overshoot a little). Data written for its own sake (phantoms,
degraded stacks) is converted from its own exact range (:func:`plan_conversion`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.volume import Volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conversion:
    """The per-block conversion of restored intensities to the output dtype, fixed before any block.

    ``clip``: integer input and output; values are rounded and clipped to the dtype's range
    (restorations stay in the input's intensity units). ``linear``: float input to an integer
    output; ``stored = value * scale + offset`` over a range fixed from the sampled input
    (block-wise output cannot rescale from the finished output's range).
    """

    dtype: str
    mode: str = "none"  # none | clip | linear
    scale: float = 1.0
    offset: float = 0.0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = np.dtype(self.dtype)
        if self.mode == "none":
            return np.asarray(block, out)
        info = np.iinfo(out)
        values = np.asarray(block, np.float64)
        if self.mode == "linear":
            values = values * self.scale + self.offset
        return np.clip(np.rint(values), info.min, info.max).astype(out)

    def describe(self) -> dict[str, Any]:
        text = {"none": f"{self.dtype} output, values as restored",
                "clip": f"{self.dtype} output: restored values rounded and clipped to the {self.dtype} range",
                "linear": f"{self.dtype} output: stored = value * {self.scale:.6g} + {self.offset:.6g}"}[self.mode]
        return {"dtype": self.dtype, "mode": self.mode, "scale": self.scale, "offset": self.offset, "text": text}


def plan_stream_conversion(dtype: str, input_dtype: np.dtype, sample: np.ndarray) -> Conversion:
    """The conversion for a block-wise run, decided from the input's dtype and a sample of its values."""
    out = np.dtype(dtype)
    if out.kind == "f":
        return Conversion(str(out))
    if np.issubdtype(input_dtype, np.integer) and np.iinfo(input_dtype).max <= np.iinfo(out).max:
        return Conversion(str(out), "clip")
    lo, hi = float(np.min(sample)), float(np.max(sample))
    pad = 0.1 * (hi - lo)  # restorations overshoot the input range a little (sharper peaks)
    lo, hi = lo - pad, hi + pad
    top = float(np.iinfo(out).max)
    scale = top / (hi - lo) if hi > lo else 1.0
    conv = Conversion(str(out), "linear", scale, -lo * scale)
    log.warning("%s", conv.describe()["text"] + " (from the sampled input range); write float32 to keep values")
    return conv


def _min_max(data: Any) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for i in range(data.shape[0]):
        block = np.asarray(data[i])
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return lo, hi


def plan_conversion(volume: Volume, dtype: str) -> tuple[Callable[[np.ndarray], np.ndarray], dict | None]:
    """The per-block conversion to ``dtype`` and, for integer outputs, the rescaling applied.

    float32: a plain cast. uint16/uint8: integer data already within the output range is
    written unchanged; float data within the range (and not normalised to max <= 1) is
    rounded; anything else is rescaled linearly from its [min, max] to the full range. The
    rescaling is logged (WARNING) and stored in ``volume.metadata['rescale']``.
    """
    out = np.dtype(dtype)
    if out == np.float32:
        return (lambda b: np.asarray(b, dtype=np.float32)), None
    top = int(np.iinfo(out).max)
    lo, hi = _min_max(volume.data)
    is_int = np.issubdtype(volume.dtype, np.integer) or volume.dtype == bool
    if lo >= 0 and hi <= top and (is_int or hi > 1):
        scale, offset, mode = 1.0, 0.0, "none"
        text = (f"{out} output: values {lo:g}..{hi:g} already lie within 0..{top}; written without rescaling"
                + ("" if is_int else " (rounded to integers)"))
        log.info("%s: %s", volume.name, text)
    else:
        scale = top / (hi - lo) if hi > lo else 0.0
        offset = -lo * scale
        mode = "linear"
        text = (f"{out} output: intensities rescaled linearly from [{lo:g}, {hi:g}] to [0, {top}] "
                f"(stored = value * {scale:.6g} {'-' if offset < 0 else '+'} {abs(offset):.6g})")
        log.warning("%s: %s; write float32 to keep the original values", volume.name, text)
    info = {"dtype": str(out), "mode": mode, "input_min": lo, "input_max": hi, "scale": scale,
            "offset": offset, "text": text}
    volume.metadata["rescale"] = info

    def convert(block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if mode == "none" and is_int:
            return block.astype(out)
        values = block.astype(np.float64) * scale + offset if mode == "linear" else block
        return np.clip(np.rint(values), 0, top).astype(out)

    return convert, info


def rescale_json(info: dict | None) -> str | None:
    return None if info is None else json.dumps(info, sort_keys=True)


def restoration_conversion(volume: Volume, dtype: str, *, seed: int = 0) -> Conversion:
    """The conversion of ``volume``'s restoration to ``dtype``, from the input's dtype and a bounded sample
    (the same rule for in-memory and block-wise runs)."""
    from .lazy import bounded, sample_blocks

    data = volume.data if volume.axes == "ZYX" else volume.channel(0, 0).data
    sample = sample_blocks(bounded(data), 32 * 2**20, seed=seed)
    return plan_stream_conversion(dtype, volume.dtype, sample)
