"""The base of methods that restore a stack plane by plane with one 2D network (IsoNet, Self-Net).

Prediction interpolates the stack along z, restores every xz and yz plane with the network and
fuses the two results; the held-out check (:mod:`isoapp.quality.heldout`) restores single planes the same
way. Subclasses provide the network (:attr:`inference_net`) and ``params.tile`` / ``params.fusion``.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import torch

from ..physics.forward import upsample
from ..training.context import RunContext
from ..training.events import ProgressEvent
from ..training.tiling import predict_tiled, receptive_field, restore_axial_planes
from .base import Method

log = logging.getLogger(__name__)

#: input voxels per forward pass on the CPU (two 160 x 512 planes): small enough for the caches
CPU_BATCH_VOXELS = 2**18


class PlaneWiseMethod(Method):
    """A method whose inference is one 2D network applied to the axial planes of the z-interpolated stack."""

    heldout_check = True
    dims = 2
    block_capable = True  # the network's receptive field bounds each output voxel's input

    def __init__(self, config, psf=None, degradation=None) -> None:
        super().__init__(config, psf, degradation)
        self._halo: int | None = None

    #: the key in ``self.nets`` of the 2D network applied to every axial plane
    inference_key: ClassVar[str]

    @property
    def inference_net(self) -> torch.nn.Module:
        """The 2D network applied to every axial plane (``self.nets[inference_key]``)."""
        return self.nets[self.inference_key]

    def halo(self) -> int:
        """The network's receptive-field margin, for tiling (measured once, reset after training)."""
        if self._halo is None:
            self._halo = receptive_field(self.inference_net, 2)
        return self._halo

    def block_geometry(self):
        """Halo: the network's receptive field on the z-interpolated grid, plus one pooling cell."""
        from ..training.tiling import BlockGeometry

        align = int(getattr(self.inference_net, "divisor", 1))
        r = self.halo() + align
        return BlockGeometry(halo_z=-(-r // max(int(self.factor), 1)) + 2, halo_yx=r, align=align, planewise=True)

    def _restore_planes(self, planes: np.ndarray, ctx: RunContext) -> np.ndarray:
        """Restore ``(N, Z, W)`` axial planes of the z-interpolated stack (z along rows).

        On the CPU the network runs channels-last on batches of at most ``CPU_BATCH_VOXELS``: oneDNN's
        convolutions with 16 to 64 channels ran 1.6-2x faster that way than channels-first on the
        default 1 Mi-voxel batches (measured on 160 x 512 planes, 2 cores; docs/SCALING.md), whose
        activations no longer fit in the cache.
        """
        net = self.inference_net.to(ctx.device).eval()
        fn, batch = net, None
        if ctx.device.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
            fn, batch = (lambda x: net(x.contiguous(memory_format=torch.channels_last))), CPU_BATCH_VOXELS
        return predict_tiled(fn, planes, ndim=2, tile=self.params.tile, halo=self.halo(),
                             divisor=getattr(net, "divisor", 1), device=ctx.device, amp=ctx.use_amp,
                             batch_voxels=batch, should_stop=ctx.should_stop)

    def restore_sampled(self, samples: np.ndarray, ctx: RunContext) -> np.ndarray:
        return self._restore_planes(upsample(samples, self.factor, axis=1, order=1), ctx)

    def predict(self, vol: np.ndarray, ctx: RunContext, slab: int = 32) -> np.ndarray:
        return self.predict_region(vol, ctx, None, slab=slab)

    def predict_region(self, vol: np.ndarray, ctx: RunContext, crop, slab: int = 32) -> np.ndarray:
        """Only the ``crop`` of the output: the xz pass skips the rows, the yz pass the columns outside it.

        On CUDA (whole planes, no ``tile``) interpolation, both passes and fusion run on the device
        (:mod:`isoapp.training.planes_device`); a block too large for the GPU falls back to the host
        path, which tiles planes and halves tiles on out-of-memory errors.
        """
        progress = lambda i, n: ctx.send(ProgressEvent("restore", i, n))  # noqa: E731
        if ctx.device.type == "cuda" and self.params.tile is None:
            from ..training.planes_device import restore_axial_planes_device

            net = self.inference_net.to(ctx.device).eval()
            try:
                return restore_axial_planes_device(
                    net, vol, self.factor, device=ctx.device, amp=ctx.use_amp, divisor=getattr(net, "divisor", 1),
                    fusion=self.params.fusion, crop=crop, should_stop=ctx.should_stop, progress=progress)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                log.warning("the block does not fit on the GPU whole; restoring its planes in tiles")
        return restore_axial_planes(lambda p: self._restore_planes(p, ctx), vol, self.factor, fusion=self.params.fusion,
                                    slab=slab, crop=crop, progress=progress)
