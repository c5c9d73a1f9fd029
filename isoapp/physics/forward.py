"""The forward model's geometry: convolution, axial sub/upsampling on the isoapp grid, and the full
simulated acquisition (:func:`degrade`: blur, sampling, camera noise from :mod:`.noise`).

Grid convention (see ``docs/ARCHITECTURE.md``): with anisotropy factor ``F`` subsampling keeps
the planes at positions ``i * F`` (:func:`subsampled_length` planes) and restoration writes
planes at input positions ``k / F`` (:func:`output_length` planes); for integer ``F``
``output[F * i]`` coincides with ``input[i]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage, signal
from scipy.interpolate import CubicSpline

from ..core.errors import ConfigError, InputError
from .noise import add_noise

log = logging.getLogger(__name__)

_EPS = 1e-9
_PAD_MODES = {"reflect": "symmetric", "constant": "constant", "edge": "edge", "wrap": "wrap"}


def _check_factor(factor: float) -> float:
    try:
        f = float(factor)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the factor must be a number, got {factor!r}") from exc
    if not (np.isfinite(f) and f > 0):
        raise ConfigError(f"the factor must be a positive number, got {factor!r}")
    return f


def output_length(n: int, factor: float) -> int:
    """Planes on the restore grid: ``floor((n - 1) * factor) + 1``."""
    f = _check_factor(factor)
    if n < 1:
        raise ConfigError(f"the axis length must be >= 1, got {n}")
    return int(math.floor((n - 1) * f + _EPS)) + 1


def subsampled_length(n: int, factor: float) -> int:
    """Planes kept by :func:`subsample`: ``floor((n - 1) / factor) + 1``."""
    f = _check_factor(factor)
    if n < 1:
        raise ConfigError(f"the axis length must be >= 1, got {n}")
    return int(math.floor((n - 1) / f + _EPS)) + 1


def _is_integer(f: float) -> bool:
    return abs(f - round(f)) < _EPS and round(f) >= 1


# ----------------------------------------------------------------------------- convolution
def fft_convolve(
    arr: np.ndarray,
    kernel: np.ndarray,
    mode: str = "same",
    *,
    axes: Sequence[int] | None = None,
    boundary: str = "reflect",
) -> np.ndarray:
    """Convolve ``arr`` with ``kernel`` by FFT, padding the borders to avoid wrap and darkening.

    Parameters
    ----------
    arr
        2D or 3D array.
    kernel
        Kernel with as many dimensions as ``arr``, or a 2D kernel with a 3D ``arr``: each plane
        ``arr[i]`` is convolved (``axes=(-2, -1)``).
    mode
        ``'same'`` (output shape of ``arr``, kernel origin at ``k // 2`` as in
        :func:`scipy.ndimage.convolve`, borders padded by ``boundary``), or ``'full'`` /
        ``'valid'`` (plain :func:`scipy.signal.fftconvolve`, no padding).
    axes
        Axes to convolve over; default all axes of the kernel (the last ``kernel.ndim`` ones).
    boundary
        ``'reflect'`` (mirror including the edge sample, like ``ndimage`` mode ``'reflect'``),
        ``'constant'`` (zeros), ``'edge'`` or ``'wrap'``.

    Returns
    -------
    np.ndarray
        float32 result.
    """
    a = np.asarray(arr, dtype=np.float32)
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim > a.ndim or k.ndim == 0:
        raise ConfigError(f"kernel {k.shape} has more dimensions than the array {a.shape}")
    if axes is None:
        axes = tuple(range(a.ndim - k.ndim, a.ndim))
    axes = tuple(ax % a.ndim for ax in axes)
    if len(axes) != k.ndim:
        raise ConfigError(f"kernel {k.shape} needs {k.ndim} axes, got {axes}")
    kfull = k.reshape([k.shape[axes.index(i)] if i in axes else 1 for i in range(a.ndim)])
    if mode in ("full", "valid"):
        return signal.fftconvolve(a, kfull, mode=mode, axes=axes).astype(np.float32)
    if mode != "same":
        raise ConfigError(f"mode must be 'same', 'full' or 'valid', got {mode!r}")
    if boundary not in _PAD_MODES:
        raise ConfigError(f"boundary must be one of {sorted(_PAD_MODES)}, got {boundary!r}")
    pads = []
    for i in range(a.ndim):
        ks = kfull.shape[i]
        c = ks // 2
        pads.append((ks - 1 - c, c) if i in axes else (0, 0))
    padded = np.pad(a, pads, mode=_PAD_MODES[boundary])
    out = signal.fftconvolve(padded, kfull, mode="valid", axes=axes)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- resampling
def sample_along(arr: np.ndarray, positions: np.ndarray, axis: int = 0, order: int = 1) -> np.ndarray:
    """Sample ``arr`` at fractional ``positions`` along ``axis`` (order 0, 1 or 3).

    Positions outside ``[0, n - 1]`` are clamped to the edge. Order 3 is a not-a-knot cubic
    spline through the samples (exact at integer positions).
    """
    a = np.asarray(arr)
    n = a.shape[axis]
    pos = np.clip(np.asarray(positions, dtype=np.float64), 0.0, n - 1)
    if order == 0:
        idx = np.floor(pos + 0.5).astype(np.intp)
        return np.take(a, np.clip(idx, 0, n - 1), axis=axis).astype(np.float32)
    if order == 3 and n >= 4:
        return _cubic_along(a, pos, axis)
    if order not in (1, 3):
        raise ConfigError(f"interpolation order must be 0, 1 or 3, got {order}")
    i0 = np.clip(np.floor(pos + _EPS).astype(np.intp), 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    t = np.clip(pos - i0, 0.0, 1.0)
    shape = [1] * a.ndim
    shape[axis] = -1
    t = t.reshape(shape).astype(np.float32)
    lo = np.take(a, i0, axis=axis).astype(np.float32)
    hi = np.take(a, i1, axis=axis).astype(np.float32)
    return (lo + t * (hi - lo)).astype(np.float32)


#: Input elements per cubic-spline call. SciPy builds and evaluates the spline in float64 holding
#: the GIL: one call on a 48 Mvoxel training region took 0.59 s (the desktop app froze that long)
#: and about 40 bytes a voxel. Measured here (9 planes, F 4): a slab of 2**20 elements takes 75 ms
#: and kept another thread waiting 32 ms; 2**18 takes 13 ms and 6 ms. Slabs are also 2.2x faster
#: than one call (cache), so nothing is lost.
CUBIC_SLAB_ELEMENTS = 2**18


def _cubic_along(a: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    """Not-a-knot cubic spline along ``axis``, slab by slab across the largest other axis.

    Each line is its own spline, so the slabs give the same values as one call.
    """
    n = a.shape[axis]
    out_shape = list(a.shape)
    out_shape[axis] = len(pos)
    out = np.empty(out_shape, dtype=np.float32)
    others = [i for i in range(a.ndim) if i != axis]
    across = max(others, key=lambda i: a.shape[i]) if others else axis
    width = a.shape[across] if others else 1
    lines = a.size // max(n, 1)
    step = max(1, CUBIC_SLAB_ELEMENTS * width // max(lines * n, 1))
    exact = np.abs(pos - np.round(pos)) < _EPS  # keep original samples bit-exact
    knots = np.arange(n, dtype=np.float64)
    for start in range(0, width, step):
        sel = [slice(None)] * a.ndim
        if others:
            sel[across] = slice(start, start + step)
        part = a[tuple(sel)]
        vals = CubicSpline(knots, part.astype(np.float64), axis=axis)(pos)
        if exact.any():
            keep = [slice(None)] * a.ndim
            keep[axis] = np.nonzero(exact)[0]
            vals[tuple(keep)] = np.take(part, np.round(pos[exact]).astype(np.intp), axis=axis)
        out[tuple(sel)] = vals
    return out


def subsample(arr: np.ndarray, factor: float, axis: int = 0, order: int = 1) -> np.ndarray:
    """Keep the positions ``i * factor`` along ``axis`` (``subsampled_length`` of them).

    Integer factors slice exactly; non-integer factors interpolate (``order`` 0, 1 or 3).
    No anti-alias blur is applied: blur first (see :func:`degrade`).
    """
    a = np.asarray(arr)
    f = _check_factor(factor)
    n = a.shape[axis]
    m = subsampled_length(n, f)
    if _is_integer(f):
        sel = [slice(None)] * a.ndim
        sel[axis] = slice(0, None, int(round(f)))
        return np.ascontiguousarray(a[tuple(sel)], dtype=np.float32)
    return sample_along(a, np.arange(m, dtype=np.float64) * f, axis=axis, order=order)


def upsample(arr: np.ndarray, factor: float, axis: int = 0, order: int = 1) -> np.ndarray:
    """Sample the positions ``k / factor``, ``k = 0 .. output_length(n, factor) - 1``, along ``axis``.

    ``order`` 1 is linear, 3 a cubic spline, 0 nearest. For integer ``factor``
    ``output[factor * i] == input[i]`` exactly.
    """
    a = np.asarray(arr)
    f = _check_factor(factor)
    m = output_length(a.shape[axis], f)
    return sample_along(a, np.arange(m, dtype=np.float64) / f, axis=axis, order=order)


# ----------------------------------------------------------------------------- full model
def degrade(
    gt: np.ndarray,
    *,
    factor: float,
    psf: np.ndarray | None = None,
    sigma_z: float | None = None,
    axis: int = 0,
    noise: dict | None = None,
    rng: np.random.Generator | int | None = None,
    order: int = 1,
) -> np.ndarray:
    """Simulate an anisotropic acquisition of an isotropically sampled volume.

    The volume is blurred (by the 3D ``psf`` on the same grid, and/or by a 1D Gaussian of
    ``sigma_z`` pixels along ``axis``), subsampled along ``axis`` at positions ``i * factor``
    and, if ``noise`` is given, noised with :func:`add_noise`.

    Parameters
    ----------
    gt
        3D array on an isotropic grid.
    factor
        Anisotropy factor ``F >= 1``; the result has ``subsampled_length(n, F)`` planes.
    psf
        Optional kernel sampled on the ``gt`` grid (same number of dimensions).
    sigma_z
        Optional axial Gaussian sigma in ``gt`` pixels.
    axis
        The axial axis.
    noise
        ``{'photons': P, 'read_noise': R}`` (keys as in :func:`add_noise`), or None.
    rng
        Generator or seed for the noise.
    order
        Interpolation order for non-integer factors.

    Returns
    -------
    np.ndarray
        float32 degraded volume.
    """
    a = np.asarray(gt, dtype=np.float32)
    f = _check_factor(factor)
    if f < 1:
        raise ConfigError(f"the anisotropy factor must be >= 1 to degrade, got {factor}")
    if a.ndim not in (2, 3):
        raise InputError(f"degrade needs a 2D or 3D array, got shape {a.shape}")
    if psf is not None:
        a = fft_convolve(a, np.asarray(psf, dtype=np.float32))
    if sigma_z is not None:
        if not (np.isfinite(sigma_z) and sigma_z >= 0):
            raise ConfigError(f"sigma_z must be >= 0 pixels, got {sigma_z}")
        if sigma_z > 0:
            a = ndimage.gaussian_filter1d(a, float(sigma_z), axis=axis, mode="reflect")
    out = subsample(a, f, axis=axis, order=order)
    if noise:
        unknown = set(noise) - {"photons", "read_noise"}
        if unknown:
            raise ConfigError(f"unknown noise settings {sorted(unknown)}; use photons and read_noise")
        out = add_noise(out, photons=noise.get("photons"), read_noise=float(noise.get("read_noise", 0.0)),
                        rng=rng)
    return out


def blur_along(a: np.ndarray, sigma: float, axes: tuple[int, ...]) -> np.ndarray:
    """``a`` blurred by a Gaussian of ``sigma`` pixels along each of ``axes`` (reflecting edges)."""
    for ax in axes:
        if sigma > 0:
            a = ndimage.gaussian_filter1d(a, sigma, axis=ax, mode="reflect")
    return a


def degrade_along(y: np.ndarray, factor: float, sigma: float, axes: tuple[int, ...], n_in: tuple[int, ...]) -> np.ndarray:
    """The forward model on the restore grid: a Gaussian blur of ``sigma`` pixels along each of ``axes``,
    then the positions ``i * F`` (``n_in[axis]`` of them) kept along each; Self-Vision degrades along
    z (and x for its xz/yz variant) with it, and its back-projection inverts it."""
    out = blur_along(np.asarray(y, np.float32), sigma, axes)
    for ax in axes:
        out = sample_along(out, np.arange(n_in[ax]) * factor, axis=ax, order=1)
    return out


def degrade_rows(patches: np.ndarray, factor: float, phase: np.ndarray, margin: int) -> np.ndarray:
    """Subsample blurred patches along rows at ``phase + i*factor`` and interpolate back.

    ``patches`` is ``(B, P + 2*margin, W)``; the result is ``(B, P, W)`` (the margin rows keep the
    interpolation inside known samples).
    """
    b, n, _ = patches.shape
    out = []
    rows = np.arange(margin, n - margin, dtype=np.float64)
    for i in range(b):
        m = int((n - 1 - phase[i]) // factor) + 1
        pos = phase[i] + np.arange(m) * factor
        coarse = sample_along(patches[i], pos, axis=0, order=1)
        out.append(sample_along(coarse, (rows - phase[i]) / factor, axis=0, order=1))
    return np.stack(out)


@lru_cache(maxsize=4096)
def sampling_matrices(n: int, factor: float, phase: float, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """``(S, U)``: sample ``n`` rows at ``phase + i*factor`` (``S``, m x n) and interpolate back (``U``).

    ``U @ S`` is :func:`isoapp.physics.forward.resample_matrix` (rows ``margin .. n-margin-1``); keeping
    them apart lets noise be added where the acquisition adds it, on the sampled rows.
    """
    m = int((n - 1 - phase) // factor) + 1
    pos = phase + np.arange(m) * factor
    S = sample_along(np.eye(n, dtype=np.float32), pos, axis=0, order=1)
    rows = np.arange(margin, n - margin, dtype=np.float64)
    U = sample_along(np.eye(m, dtype=np.float32), (rows - phase) / factor, axis=0, order=1)
    S.setflags(write=False)
    U.setflags(write=False)
    return S, U


def resample_matrix(n: int, factor: float, phase: float, margin: int = 0) -> np.ndarray:
    """The linear map of :func:`degrade_rows` as a ``(n - 2*margin, n)`` matrix (``U @ S`` of :func:`sampling_matrices`).

    Row ``r`` of the result holds the weights that sampling ``n`` rows at ``phase + i*factor``
    and interpolating linearly back give output row ``margin + r``. Networks use it to apply
    the acquisition's axial sampling *after* a learned blur (blur, then sample: the physical
    order), differentiably (``M @ x`` along the axial axis).
    """
    if n < 1 or margin < 0 or n - 2 * margin < 1:
        raise ConfigError(f"resample_matrix needs n >= 2 * margin + 1, got n={n}, margin={margin}")
    if not (0.0 <= phase < n):
        raise ConfigError(f"the sampling phase must lie in [0, {n}), got {phase}")
    S, U = sampling_matrices(n, float(factor), float(phase), margin)
    return U @ S


def sampling_phase(start: float, factor: float, length: int, flipped: bool = False) -> float:
    """Position of the first acquired plane in a window of a z-interpolated stack.

    The planes of a stack upsampled by ``factor`` (:func:`upsample`) lie at ``i * factor``. A
    window starting at ``start`` holds them at ``phase + k * factor``; a window flipped along
    that axis (``length`` rows) holds them at ``length - 1 - (phase + k * factor)``. Exact for
    integer factors; for others :func:`resample_matrix` then re-samples an interpolated window,
    which slightly smooths it.
    """
    f = _check_factor(factor)
    phase = (-float(start)) % f
    if flipped:
        phase = (length - 1 - phase) % f
    return 0.0 if f - phase < _EPS else phase


def resample_along(x: torch.Tensor, matrices: torch.Tensor, axis: int = -2) -> torch.Tensor:
    """Apply one sampling matrix per batch item along ``axis`` of ``x`` (``(B, C, ...)``).

    ``matrices`` is ``(B, m, n)`` (see :func:`isoapp.physics.forward.resample_matrix`), ``x.shape[axis]``
    is ``n``; the result has ``m`` there. Differentiable, so a learned blur can be followed by
    the acquisition's axial sampling inside a loss.
    """
    x = x.movedim(axis, -1)
    if x.shape[-1] != matrices.shape[-1] or matrices.shape[0] != x.shape[0]:
        raise ValueError(f"matrices {tuple(matrices.shape)} do not fit an axis of {x.shape[-1]} and batch {x.shape[0]}")
    m = matrices.to(x.dtype).reshape(matrices.shape[0], *([1] * (x.ndim - 2)), *matrices.shape[1:])
    return (m @ x.unsqueeze(-1)).squeeze(-1).movedim(-1, axis)
