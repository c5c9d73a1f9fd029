"""The forward model of an axial plane: what a sharp lateral plane looks like once acquired along z.

A blurred plane is sampled every ``F`` rows at a phase, given the noise the acquisition adds after
the blur (:mod:`.noise`; a blurred noisy plane keeps ``sum(k**2)`` of its own noise and the rest is
topped up) and interpolated back onto the rows. :func:`acquire_rows` and its torch twin
:func:`acquire_rows_torch` make training pairs (:mod:`isoapp.training.pairs`, Self-Net's and
OT-cycleGAN's learned blurs); :func:`acquire_planes` makes the held-out check's samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .degradation import Degradation
from .forward import fft_convolve, resample_along, sampling_matrices, subsample
from .noise import add_model_noise_torch


def acquire_rows(blurred: np.ndarray, degradation: Degradation | None, factor: float, phase: float, margin: int,
                 rng: np.random.Generator, kept_noise: float) -> np.ndarray:
    """Sample a blurred crop ``(n, W)`` along rows at ``phase + i*F``, add noise, interpolate back.

    Returns rows ``margin .. n - margin - 1`` (``(n - 2*margin, W)``).
    """
    S, U = sampling_matrices(blurred.shape[0], float(factor), round(float(phase), 3), margin)
    s = S @ blurred
    if degradation is not None:
        s = degradation.add_noise(s, rng, already=kept_noise)
    return (U @ s).astype(np.float32)


def acquire_rows_torch(blurred: torch.Tensor, factor: float, phases: Sequence[float], margin: int,
                       degradation: Degradation | None, kept_noise: float, axis: int = -2,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`acquire_rows` for a torch batch ``(B, C, ...)`` along ``axis``, one phase per item.

    Sampling (``S``), noise on the sampled rows and interpolation back (``U``) as separate
    matrices (:func:`~isoapp.physics.forward.sampling_matrices`), zero-padded to a common number of
    samples. Differentiable in ``blurred`` (the noise is a constant offset).
    """
    n = blurred.shape[axis]
    pairs = [sampling_matrices(n, float(factor), round(float(ph), 3), margin) for ph in phases]
    mmax = max(S.shape[0] for S, _ in pairs)
    Ss = np.zeros((len(pairs), mmax, n), np.float32)
    Us = np.zeros((len(pairs), n - 2 * margin, mmax), np.float32)
    for i, (S, U) in enumerate(pairs):
        Ss[i, :S.shape[0]] = S
        Us[i, :, :S.shape[0]] = U
    dev = blurred.device
    s = resample_along(blurred, torch.from_numpy(Ss).to(dev), axis=axis)
    if degradation is not None and degradation.has_noise and kept_noise < 1.0:
        s = add_model_noise_torch(s, degradation.noise_gain, degradation.noise_offset, kept_noise, generator)
    return resample_along(s, torch.from_numpy(Us).to(dev), axis=axis)


def acquire_planes(planes: np.ndarray, kernel: np.ndarray, degradation: Degradation,
                   rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(sharp, samples)]`` for each orientation: lateral planes acquired as axial ones (blurred by
    ``kernel`` along rows, sampled every ``F`` rows from row 0, noised), turned so that the degraded
    axis is rows. The held-out check restores the samples and scores them against the sharp planes."""
    k = np.asarray(kernel, np.float32)
    kn = k / k.sum()
    kept = float(kn.ravel() @ kn.ravel())
    out = []
    for orient in (0, 1):
        b = fft_convolve(planes, k if orient == 0 else k.T, axes=(-2, -1))
        sharp = planes if orient == 0 else planes.transpose(0, 2, 1)
        b = b if orient == 0 else b.transpose(0, 2, 1)
        s = subsample(b, degradation.factor, axis=1)
        out.append((np.ascontiguousarray(sharp), degradation.add_noise(s, rng, already=kept)))
    return out
