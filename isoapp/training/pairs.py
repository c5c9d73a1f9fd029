"""The shared source of training pairs: lateral planes degraded by the stack's model.

A sharp lateral crop is turned into what a real axial (xz/yz) plane of the same stack looks like:
blurred along rows by the axial kernel, sampled every ``F`` rows at the phases the real
z-interpolated planes have, given the noise the acquisition adds after the blur (the blurred
plane keeps ``sum(k**2)`` of its own noise; the rest is topped up; :mod:`isoapp.physics.acquisition`),
and interpolated back. The target is the sharp crop. IsoNet and Self-Net's DeblurNet (with its
learned blur in place of the kernel) train on these pairs, and :mod:`isoapp.quality.heldout` degrades its
held-out planes the same way.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from ..physics.acquisition import acquire_rows
from ..physics.degradation import Degradation
from ..physics.forward import fft_convolve, sampling_phase
from .sampler import PatchSampler, augment, foreground_mask

log = logging.getLogger(__name__)

MAX_TRAIN_PLANES = 96


def training_planes(nz: int, exclude: Sequence[int] = (), max_planes: int = MAX_TRAIN_PLANES) -> np.ndarray:
    """Indices of up to ``max_planes`` lateral planes spread over ``nz``, none of ``exclude`` (held out)."""
    pool = np.setdiff1d(np.arange(nz), np.asarray(exclude, int))
    if pool.size == 0:
        pool = np.arange(nz)
    take = np.unique(np.linspace(0, pool.size - 1, min(pool.size, max_planes)).round().astype(int))
    return pool[take]


def _blur_planes(planes: np.ndarray, kernel: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Each plane convolved with ``kernel``, a few planes per FFT so the temporaries stay small."""
    out = np.empty_like(planes)
    for i in range(0, len(planes), chunk):
        out[i:i + chunk] = fft_convolve(planes[i:i + chunk], kernel, axes=(-2, -1))
    return out


class LateralPairs:
    """Draws ``(input, target)`` batches of ``P x P`` crops from lateral planes.

    Parameters
    ----------
    planes
        ``(N, Y, X)`` normalised lateral planes (held-out planes already removed).
    factor
        The anisotropy factor.
    patch
        Crop edge ``P``; crops carry ``ceil(F)`` extra rows and columns on each side for the sampling.
    rng
        Generator for every draw.
    kernel
        2D blur kernel, its axial extent along rows; the pairs degrade along rows and, transposed,
        along columns (both lateral axes stand in for z). None with ``blur``.
    blur
        Instead of ``kernel``: a callable blurring a ``(B, n, n)`` batch along rows (e.g. Self-Net's
        learned G_A); noise is then topped up fully (its kept share is unknown, taken as 0).
    degradation
        The noise model (None or a noise-free model: no noise).
    """

    def __init__(self, planes: np.ndarray, factor: float, patch: int, rng: np.random.Generator, *,
                 kernel: np.ndarray | None = None, blur: Callable[[np.ndarray], np.ndarray] | None = None,
                 degradation: Degradation | None = None, foreground_fraction: float = 0.9,
                 index_range: tuple[int, int] | None = None) -> None:
        if (kernel is None) == (blur is None):
            raise ValueError("LateralPairs needs exactly one of kernel and blur")
        self.planes = np.ascontiguousarray(planes, np.float32)
        self.factor = float(factor)
        self.margin = int(math.ceil(factor))
        self.patch = int(patch)
        self.size = self.patch + 2 * self.margin
        self.degradation = degradation
        self.blur = blur
        self.kept_noise = 0.0
        self.blurred: dict[int, np.ndarray] = {}
        if kernel is not None:
            k = np.asarray(kernel, np.float32)
            self.blurred = {0: _blur_planes(self.planes, k), 1: _blur_planes(self.planes, k.T)}
            self.kept_noise = float((k / k.sum()) .ravel() @ (k / k.sum()).ravel())
        self.mask = foreground_mask(self.planes)
        self.sampler = PatchSampler(self.planes, (self.size, self.size), rng, foreground_fraction=foreground_fraction,
                                    index_range=index_range, mask=self.mask)

    def subset(self, index_range: tuple[int, int], rng: np.random.Generator, *,
               foreground_fraction: float = 0.9) -> LateralPairs:
        """The same planes, blurs and mask, sampling only planes ``index_range`` (validation pairs; no copies)."""
        other = copy.copy(self)
        other.sampler = PatchSampler(self.planes, (self.size, self.size), rng, foreground_fraction=foreground_fraction,
                                     index_range=index_range, mask=self.mask)
        return other

    def crops(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` sharp crops ``(n, size, size)`` turned so that the degraded axis is rows, and their blurred versions.

        With ``blur`` the second array is the sharp crop (blurred later, in :meth:`degrade`).
        """
        sharp, blurred = [], []
        for _ in range(n):
            corner = self.sampler.corner()
            orient = int(rng.integers(2))
            c = self.sampler.crop(corner)
            b = self.sampler.crop(corner, self.blurred[orient]) if self.blurred else c
            if orient:
                c, b = c.T, b.T
            sharp.append(c)
            blurred.append(b)
        return np.stack(sharp), np.stack(blurred)

    def degrade(self, blurred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample, noise and interpolate blurred crops ``(B, size, size)`` -> ``(B, P, P)``."""
        m = self.margin
        out = []
        for b in blurred:
            phase = sampling_phase(int(rng.integers(0, 10_000)), self.factor, self.size)
            out.append(acquire_rows(b, self.degradation, self.factor, phase, m, rng, self.kept_noise)[:, m:-m])
        return np.stack(out)

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: degraded inputs and sharp targets, ``(n, P, P)`` float32 each, flipped at random."""
        sharp, blurred = self.crops(n, rng)
        if self.blur is not None:
            blurred = self.blur(sharp)
        m = self.margin
        x = self.degrade(blurred, rng)
        y = sharp[:, m:-m, m:-m]
        x, y = augment([x, y], rng, rotate=False, flip_axes=(-2, -1))  # flips commute with the axial blur
        return np.ascontiguousarray(x), np.ascontiguousarray(y)
