"""Spectral statistics of anisotropic stacks: how much more the axial direction is blurred.

* :func:`axial_log_spectrum`: the batch-averaged log ratio of the power spectrum along rows (z) to
  the one along columns, for square planes; the object's own spectrum cancels in it. Self-Net
  matches it between synthetic and real axial crops (a spectral loss).

It assumes that the sample's structure is statistically isotropic (no preferred orientation
between the lateral and axial directions).
"""

from __future__ import annotations

import torch


def axial_log_spectrum(x: torch.Tensor, rel_eps: float = 1e-4) -> torch.Tensor:
    """Log ratio of the power spectrum along rows (z) to the one along columns, batch-averaged.

    ``x`` is ``(B, C, n, n)``. Each crop loses its mean and is Hann-windowed; the 1D power
    spectra along rows and along columns are averaged over the other axis and the batch, and
    ``log(P_rows / P_cols)`` (``n // 2 + 1`` frequencies) is returned. For planes of one
    isotropic sample the object's spectrum cancels, leaving (up to sampling) ``|H_z|^2 / |H_x|^2``:
    how much more the axial direction is blurred. ``rel_eps`` (of the mean power) floors the
    spectra where the blur leaves nothing.
    """
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError(f"axial_log_spectrum needs square crops, got {tuple(x.shape[-2:])}")
    x = x.float() - x.float().mean(dim=(-2, -1), keepdim=True)
    w = torch.hann_window(n, periodic=False, device=x.device, dtype=x.dtype)
    p_rows = torch.fft.rfft(x * w[:, None], dim=-2).abs().pow(2).mean(dim=(0, 1, 3))
    p_cols = torch.fft.rfft(x * w[None, :], dim=-1).abs().pow(2).mean(dim=(0, 1, 2))
    eps = rel_eps * 0.5 * (p_rows.mean() + p_cols.mean()).detach() + 1e-12
    return torch.log(p_rows + eps) - torch.log(p_cols + eps)
