"""Self-Vision's forward model on the restore grid and its training pairs (:mod:`isoapp.methods.selfvision`).

:func:`back_project` (through the forward model :func:`isoapp.physics.forward.degrade_along`) makes an
estimate consistent with the input through it, and :class:`PairMaker` draws zero-shot training
pairs (input, target) from the stack itself.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..core.errors import InputError
from ..physics.degradation import Degradation, kernel_energy
from ..physics.forward import blur_along, degrade_along, output_length, sample_along, upsample
from ..training.device import to_device
from ..training.sampler import PatchSampler

log = logging.getLogger(__name__)


def back_project(y: np.ndarray, x: np.ndarray, factor: float, sigma: float, axes: tuple[int, ...],
                 iters: int, step: float = 1.0, noise: float = 0.0) -> tuple[np.ndarray, int]:
    """Iterative back-projection (Irani & Peleg): make ``degrade(y)`` match the input ``x``.

    Stops early when the RMS residual falls to the noise level ``noise`` (discrepancy principle:
    fitting the noise only adds it back). Returns the estimate and the iterations done.
    """
    y = np.array(y, np.float32, copy=True)
    done = 0
    for _ in range(iters):
        res = x - degrade_along(y, factor, sigma, axes, x.shape)
        if noise > 0 and float(np.sqrt(np.mean(res * res))) <= noise:
            break
        for ax in axes:
            res = upsample(res, factor, axis=ax, order=1)
        y += step * res
        done += 1
    return y, done


# ---------------------------------------------------------------------------- training pairs
class PairMaker:
    """Draws (input, target) crops from the stack for zero-shot training.

    Shapes: input ``(p_0, p_1, p_2)``, target ``r`` times larger along the degraded axes (network
    axes; z mode: axis 0 only).
    """

    def __init__(self, vol: np.ndarray, factor: float, mode: str, sigma: float, patch: int,
                 rng: np.random.Generator, foreground_fraction: float = 0.9, noise: Degradation | None = None,
                 exclude: tuple[int, ...] = ()) -> None:
        self.F, self.r, self.mode, self.sigma = factor, math.ceil(factor - 1e-9), mode, sigma
        self.integer = abs(factor - round(factor)) < 1e-9
        self.m = int(math.ceil(3 * sigma)) + 1
        ny, nx = vol.shape[1:]

        def deg_len(p: int) -> int:  # source voxels for p input samples (+ phase and blur margins)
            return int(math.ceil(self.F * (p + 1))) + 2 * self.m + 1

        def max_p(n: int) -> int:
            return int((n - 2 * self.m - 1) / self.F) - 1

        if mode == "z":
            self.p_lat, cz = self.z_extent(vol.shape, factor, patch)
            want = max(4, math.ceil(patch / self.r))
            self.p_deg = min(want, max_p(min(ny, nx)))
            if self.p_deg < 3 or self.p_lat < 8:
                raise InputError(f"the stack {vol.shape} is too small for Self-Vision training at factor {factor:g} "
                                 f"(axial blur {sigma:.2g} px): it needs at least {deg_len(3)} px laterally and "
                                 "3 planes; use a larger stack or a smaller --factor")
            s_lat = max(deg_len(self.p_deg), self.p_lat)
            size = (cz, s_lat, s_lat)
        else:
            want = max(6, patch // 2)
            self.p_axes = [min(want, max_p(n)) for n in vol.shape]
            if min(self.p_axes) < 3:
                raise InputError(f"the stack {vol.shape} is too small for zyx Self-Vision at factor {factor:g}: "
                                 f"each axis needs at least {deg_len(3)} voxels; use --axes z or a smaller factor")
            size = tuple(deg_len(p) for p in self.p_axes)
        # no crop covers a held-out plane (isoapp.quality.heldout)
        self.sampler = PatchSampler(vol, size, rng, foreground_fraction=foreground_fraction, exclude=exclude)
        self.rng = rng
        self.noise = noise  # the acquisition's noise, added to the inputs after the blur (isoapp.physics.degradation)

    @staticmethod
    def z_extent(shape: tuple[int, ...], factor: float, patch: int) -> tuple[int, int]:
        """z mode: a crop's extent along z on the lateral grid (``p_lat``) and the stack planes it spans."""
        nz, ny, nx = shape
        p_lat = min(patch, ny, nx, output_length(nz, factor))
        return p_lat, min(nz, int(math.ceil((p_lat - 1) / factor)) + 2)

    def _positions(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Target and input sample positions (source voxels) along a degraded axis."""
        phase = float(self.rng.integers(int(self.F))) if self.integer else float(self.rng.uniform(0, self.F))
        t = self.m + phase + (self.F / self.r) * np.arange(self.r * p)
        return t, t[:: self.r]

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        g = self.rng
        src = self.sampler.crop(self.sampler.corner()).astype(np.float32)
        if self.mode == "z":
            if g.random() < 0.5:  # x instead of y becomes the degraded axis
                src = src.transpose(0, 2, 1)
            o0 = int(g.integers(src.shape[2] - self.p_lat + 1))
            src = src[:, :, o0:o0 + self.p_lat]
            z_room = (src.shape[0] - 1) - (self.p_lat - 1) / self.F
            z0 = float(g.uniform(0, max(z_room, 0.0)))
            src = sample_along(src, z0 + np.arange(self.p_lat) / self.F, axis=0, order=1)  # lateral grid
            src = src.transpose(1, 0, 2)  # (degraded lateral, z, other lateral)
            if g.random() < 0.5:
                src = src.transpose(0, 2, 1)
            deg_axes = (0,)
        else:
            if g.random() < 0.5:
                src = src.transpose(0, 2, 1)
            deg_axes = (0, 1, 2)
        for ax in range(3):
            if g.random() < 0.5:
                src = np.flip(src, axis=ax)
        src = np.ascontiguousarray(src)
        blurred = blur_along(src, self.sigma, deg_axes)
        tgt, inp = src, blurred
        for ax in deg_axes:
            p = self.p_deg if self.mode == "z" else self.p_axes[ax]
            t, ti = self._positions(p)
            tgt = sample_along(tgt, t, axis=ax, order=1)
            inp = sample_along(inp, ti, axis=ax, order=1)
        if self.noise is not None:  # the crop keeps sum(k^2) of its own noise per blurred axis; top up the rest
            inp = self.noise.add_noise(inp, g, already=kernel_energy(self.sigma) ** len(deg_axes))
        return inp, tgt

    def batch(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.pair() for _ in range(n)]
        xs = torch.from_numpy(np.stack([p[0] for p in pairs])).unsqueeze(1)
        ys = torch.from_numpy(np.stack([p[1] for p in pairs])).unsqueeze(1)
        return to_device(xs, device), to_device(ys, device)
