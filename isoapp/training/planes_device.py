"""The plane-wise restoration with every step on the device: interpolation, both passes and fusion.

:func:`isoapp.training.tiling.restore_axial_planes` interpolates each slab along z, transposes it and
fuses the two passes with numpy, and sends only the network's input to the device. On a GPU the
host then does most of the work: interpolating a 176 x 700 x 700 stack alone took 28 s on the host
(issue 14's measurement), far longer than the network. Here the input block goes to the device
once (from pinned memory), and slabs of planes are interpolated, restored, cropped and fused there;
one copy brings the result back. The arithmetic is that of the host path (the same linear
interpolation in float32, the same padding to the network's divisor, the same geometric or
arithmetic fusion), so on the CPU both give the same numbers to float rounding (tested); on CUDA
autocast runs the network in bfloat16 or float16, as the host path does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..core.errors import Cancelled
from ..physics.forward import _EPS, output_length
from .device import autocast, to_device
from .tiling import _pad_to, crop_ranges


def _interp_weights(nz: int, factor: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The planes below and above every output position ``k / factor`` and the weight of the upper one."""
    m = output_length(nz, factor)
    pos = np.clip(np.arange(m, dtype=np.float64) / float(factor), 0.0, nz - 1)
    i0 = np.clip(np.floor(pos + _EPS).astype(np.int64), 0, nz - 1)
    i1 = np.minimum(i0 + 1, nz - 1)
    t = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    return (torch.from_numpy(i0).to(device), torch.from_numpy(i1).to(device),
            torch.from_numpy(t).to(device).view(-1, 1, 1))


def restore_axial_planes_device(net: Callable[[torch.Tensor], torch.Tensor], vol: np.ndarray, factor: float, *,
                                device: torch.device | str, amp: bool = False, divisor: int = 1,
                                fusion: str = "geometric", crop: Sequence[slice] | None = None,
                                batch_voxels: int | None = None, should_stop: Callable[[], bool] | None = None,
                                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """:func:`isoapp.training.tiling.restore_axial_planes` with whole planes, computed on ``device``.

    ``net`` maps ``(B, 1, Z', W)`` to the same shape; ``batch_voxels`` bounds the input voxels of
    one forward pass (default 4 Mi on CUDA, 1 Mi on the CPU). Raises ``torch.cuda.OutOfMemoryError``
    when a batch of one plane does not fit (the caller then falls back to tiles on the host).
    """
    device = torch.device(device)
    nz, ny, nx = vol.shape
    m = output_length(nz, factor)
    (z0, z1), (y0, y1), (x0, x1) = crop_ranges(crop, (m, ny, nx))
    if batch_voxels is None:
        batch_voxels = 2**22 if device.type == "cuda" else 2**20
    v = to_device(torch.from_numpy(np.ascontiguousarray(vol, np.float32)), device)
    i0, i1, t = _interp_weights(nz, factor, device)
    out = torch.empty((z1 - z0, y1 - y0, x1 - x0), dtype=torch.float32, device=device)
    total = (y1 - y0) + (x1 - x0)

    def restore(planes: torch.Tensor) -> torch.Tensor:
        """``(N, Z', W)`` interpolated planes through the network, in batches of at most ``batch_voxels``."""
        per = max(1, batch_voxels // max(1, planes.shape[1] * planes.shape[2]))
        res = []
        for b0 in range(0, planes.shape[0], per):
            if should_stop is not None and should_stop():
                raise Cancelled("prediction stopped on request")
            x, sizes = _pad_to(planes[b0:b0 + per].unsqueeze(1), divisor, 2)
            with torch.no_grad(), autocast(device, amp):
                y = net(x)
            res.append(y.float()[:, 0, :sizes[0], :sizes[1]])
        return torch.cat(res)

    def interpolated(part: torch.Tensor) -> torch.Tensor:
        lo, hi = part[i0], part[i1]
        return lo + t * (hi - lo)

    slab = max(1, batch_voxels // max(1, m * max(nx, ny)))
    done = 0
    for y in range(y0, y1, slab):  # xz planes: (Y, Z', X)
        ye = min(y + slab, y1)
        planes = interpolated(v[:, y:ye, :]).permute(1, 0, 2).contiguous()
        out[:, y - y0:ye - y0, :] = restore(planes)[:, z0:z1, x0:x1].permute(1, 0, 2)
        done += ye - y
        if progress is not None:
            progress(done, total)
    for x in range(x0, x1, slab):  # yz planes: (X, Z', Y)
        xe = min(x + slab, x1)
        planes = interpolated(v[:, :, x:xe]).permute(2, 0, 1).contiguous()
        b = restore(planes)[:, z0:z1, y0:y1].permute(1, 2, 0)
        a = out[:, :, x - x0:xe - x0]
        if fusion == "geometric":
            out[:, :, x - x0:xe - x0] = torch.sqrt(a.clamp(min=0) * b.clamp(min=0))
        else:
            out[:, :, x - x0:xe - x0] = 0.5 * (a + b)
        done += xe - x
        if progress is not None:
            progress(done, total)
    return out.cpu().numpy()
