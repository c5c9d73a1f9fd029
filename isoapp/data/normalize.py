"""Intensity mappings: the one normaliser (percentiles to about [0, 1] before a method, and back after
it) and histogram matching (an optional last step of OT-cycleGAN)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORM_PERCENTILES = (1.0, 99.8)


@dataclass(frozen=True)
class Normalizer:
    """``before(x) = (x - lo) / (hi - lo)`` and its inverse ``after``; ``lo, hi`` from percentiles of the data."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, x: np.ndarray, percentiles: tuple[float, float] = NORM_PERCENTILES) -> Normalizer:
        """The normaliser of ``x``: its ``percentiles`` (a flat array gets a unit range)."""
        lo, hi = (float(v) for v in np.percentile(x, percentiles))
        if hi - lo < 1e-12:
            hi = lo + max(abs(lo), 1.0)
        return cls(lo, hi)

    def before(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=np.float32, copy=True)  # one float32 copy, changed in place (large stacks)
        out -= np.float32(self.lo)
        out /= np.float32(self.hi - self.lo)
        return out

    def after(self, y: np.ndarray) -> np.ndarray:
        out = np.array(y, dtype=np.float32, copy=True)
        out *= np.float32(self.hi - self.lo)
        out += np.float32(self.lo)
        return out

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}


def normalize(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Percentile normalisation to about [0, 1] (:class:`Normalizer`); the array and ``(lo, hi)`` to undo it."""
    n = Normalizer.fit(x)
    return n.before(x), n.lo, n.hi


def match_histogram(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Map the values of ``img`` monotonically so that its histogram matches ``ref``'s (rank mapping)."""
    flat = img.ravel()
    order = np.argsort(flat, kind="stable")
    ref_sorted = np.sort(ref, axis=None)
    q = np.linspace(0.0, 1.0, flat.size)
    out = np.empty_like(flat, dtype=np.float32)
    out[order] = np.interp(q, np.linspace(0.0, 1.0, ref_sorted.size), ref_sorted)
    return out.reshape(img.shape)
