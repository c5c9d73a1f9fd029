"""The device path of plane-wise restoration (interpolation, passes and fusion in torch) computes what
the host path computes. Run here on the CPU, where both must agree to float rounding; on CUDA the
same code runs with autocast (tests/test_amp.py covers mixed precision on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoapp.training.planes_device import restore_axial_planes_device
from isoapp.training.tiling import predict_tiled, restore_axial_planes


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 1, 3, padding=1), torch.nn.Softplus()).eval()


@pytest.mark.parametrize("factor,fusion,crop", [
    (4.0, "geometric", None),
    (2.5, "mean", None),
    (3.0, "geometric", (slice(5, 30), slice(3, 17), slice(6, 21))),
])
def test_device_path_equals_host_path(factor, fusion, crop):
    rng = np.random.default_rng(0)
    vol = rng.random((11, 20, 24)).astype(np.float32)
    net = _net()

    def host_planes(p):
        return predict_tiled(net, p, ndim=2, halo=8, device="cpu")

    host = restore_axial_planes(host_planes, vol, factor, fusion=fusion, slab=7, crop=crop)
    dev = restore_axial_planes_device(net, vol, factor, device="cpu", fusion=fusion, crop=crop,
                                      batch_voxels=3000)  # several batches and slabs
    assert dev.shape == host.shape
    np.testing.assert_allclose(dev, host, rtol=0, atol=1e-5 * float(np.abs(host).max()))
    # the check can fail: a device path that fused wrongly (mean for geometric) differs
    other = "mean" if fusion == "geometric" else "geometric"
    wrong = restore_axial_planes_device(net, vol, factor, device="cpu", fusion=other, crop=crop)
    assert np.abs(wrong - host).max() > 1e-3


def test_device_path_pads_to_the_unets_divisor_as_the_host_path_does():
    from isoapp.methods.nets import UNet

    torch.manual_seed(1)
    net = UNet(ndim=2, depth=2).eval()
    vol = np.random.default_rng(1).random((9, 18, 22)).astype(np.float32)  # 33 x 22 planes: not multiples of 4
    host = restore_axial_planes(lambda p: predict_tiled(net, p, ndim=2, halo=16, divisor=net.divisor, device="cpu"),
                                vol, 4.0)
    dev = restore_axial_planes_device(net, vol, 4.0, device="cpu", divisor=net.divisor)
    np.testing.assert_allclose(dev, host, rtol=0, atol=1e-5 * float(np.abs(host).max()))
