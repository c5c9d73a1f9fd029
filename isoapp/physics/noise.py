"""The one noise model: Poisson shot noise plus Gaussian read noise, after the blur.

Two samplers of the same model live here:

- :func:`add_noise` simulates a camera exactly (Poisson photon counts plus Gaussian read
  noise); the phantoms and ``isoapp degrade`` use it.
- :func:`add_model_noise` (numpy) and :func:`add_model_noise_torch` draw its Gaussian
  approximation with variance ``gain * x + offset``, the form the stack's
  :class:`~isoapp.physics.degradation.Degradation` estimates and pair synthesis, the held-out
  check and Self-Vision use. :func:`camera_gain_offset` gives the gain and offset of a camera in
  the array's own units, so both samplers describe the same noise.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..core.errors import ConfigError

log = logging.getLogger(__name__)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def add_noise(
    arr: np.ndarray,
    *,
    photons: float | None,
    read_noise: float = 0.0,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Camera noise: Poisson shot noise plus Gaussian read noise, in the input's intensity scale.

    Parameters
    ----------
    arr
        Non-negative intensities (negatives count as 0 photons).
    photons
        Expected photon count at the maximum of ``arr`` (the array is scaled by
        ``photons / max``, noised, and scaled back). ``None``: no shot noise, and
        ``read_noise`` is then in the units of ``arr``.
    read_noise
        Standard deviation of the Gaussian camera noise in photo-electrons (or in ``arr``
        units when ``photons`` is None).
    rng
        Generator or seed.

    Returns
    -------
    np.ndarray
        float32 noisy array with the same mean as ``arr`` (for non-negative input).
    """
    a = np.asarray(arr, dtype=np.float64)
    g = _rng(rng)
    if read_noise < 0:
        raise ConfigError(f"read noise must be >= 0, got {read_noise}")
    if photons is None:
        out = a + (g.normal(0.0, read_noise, a.shape) if read_noise > 0 else 0.0)
        return np.asarray(out, dtype=np.float32)
    if not (np.isfinite(photons) and photons > 0):
        raise ConfigError(f"photons must be a positive number, got {photons}")
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0:
        log.warning("add_noise: the image is zero everywhere; only read noise is added")
        scale = 1.0
    else:
        scale = float(photons) / peak
    counts = g.poisson(np.clip(a, 0.0, None) * scale).astype(np.float64)
    if read_noise > 0:
        counts += g.normal(0.0, read_noise, a.shape)
    return (counts / scale).astype(np.float32)


def camera_gain_offset(peak: float, photons: float, read_noise: float = 0.0) -> tuple[float, float]:
    """``(gain, offset)`` of :func:`add_noise`'s variance ``gain * x + offset`` in the array's units.

    A value ``x`` holds ``x * photons / peak`` photo-electrons, whose Poisson variance is the count
    itself; read noise adds ``read_noise**2`` electrons squared; scaled back to the array's units
    the variance is ``x * peak / photons + (read_noise * peak / photons)**2``.
    """
    scale = float(peak) / float(photons)
    return scale, (float(read_noise) * scale) ** 2


def model_variance(x: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Noise variance at intensity ``x``: ``max(gain * x + offset, 0)``."""
    return np.clip(gain * x + offset, 0.0, None)


def add_model_noise(x: np.ndarray, gain: float, offset: float, rng: np.random.Generator,
                    already: float = 0.0) -> np.ndarray:
    """``x`` plus Gaussian noise of variance ``(gain * x + offset) * (1 - already)``.

    ``already`` is the fraction of the noise variance that ``x`` still carries (a blurred noisy
    plane keeps ``sum(k**2)`` of it), so the result carries about the full variance.
    """
    std = np.sqrt(model_variance(x, gain, offset) * (1.0 - already)).astype(np.float32)
    return (x + std * rng.standard_normal(x.shape).astype(np.float32)).astype(np.float32)


def add_model_noise_torch(s: torch.Tensor, gain: float, offset: float, already: float = 0.0,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`add_model_noise` for a torch tensor; the noise is a constant offset for the gradient.

    The normal draws are made on the CPU (``generator`` is a CPU generator), so a run gives the same
    noise on any device.
    """
    var = torch.clamp(gain * s.detach() + offset, min=0.0) * (1 - already)
    z = torch.randn(s.shape, generator=generator, device="cpu").to(s.device, s.dtype)
    return s + var.sqrt() * z
