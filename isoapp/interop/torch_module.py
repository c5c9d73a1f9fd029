"""The eager form of an exported model: z interpolation, a plane-wise network on every xz and yz plane,
and fusion, as one torch module (:class:`PlaneWiseIsotropic`) that TorchScript can trace.

The bioimage.io export scripts it; a package is restored by rebuilding it from the package's
config and state dict (:mod:`.package_safety`), never by running a stranger's TorchScript.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from ..core.errors import ConfigError

#: why the other built-in methods cannot be exported (one line each)
NOT_EXPORTABLE: dict[str, str] = {
    "cubic": "cubic-spline interpolation needs a spline prefilter along the whole z axis, which no "
             "bioimage.io consumer applies; export a linear or a trained model instead",
    "rl": "Richardson-Lucy deconvolution iterates FFTs over the whole padded stack with the run's PSF; "
          "it is not a network and has no bioimage.io form",
    "selfvision": "its prediction averages rotated passes and ends with back-projection iterations whose "
                  "count depends on the stack's noise, which a TorchScript module of fixed size cannot express",
    "otcyclegan": "its 3D generator runs with linearly blended tiles and histogram matching to the input, "
                  "which a single bioimage.io inference cannot reproduce",
}


class PlaneWiseIsotropic(nn.Module):
    """Whole restoration of a normalised ``(B, C, Z, Y, X)`` stack in one scriptable module.

    z is linearly interpolated onto ``(Z - 1) * factor + 1`` planes (input plane ``i`` lands on
    output plane ``factor * i``); with a network, every xz and yz plane is restored (padded to a
    multiple of ``divisor`` as :func:`isoapp.training.tiling.predict_tiled` pads) and the two are
    fused (geometric mean of the non-negative parts, or the arithmetic mean), as
    :func:`isoapp.training.tiling.restore_axial_planes`. ``chunk`` planes go through the net at once.
    """

    def __init__(self, net: nn.Module | None, factor: int, fusion: str = "geometric", divisor: int = 1,
                 chunk: int = 16) -> None:
        super().__init__()
        self.has_net = net is not None
        self.net = net if net is not None else nn.Identity()
        self.factor = int(factor)
        self.geometric = fusion == "geometric"
        self.divisor = int(divisor)
        self.chunk = int(chunk)

    def _planes(self, p: torch.Tensor) -> torch.Tensor:
        h, w = p.shape[-2], p.shape[-1]
        ph = (self.divisor - h % self.divisor) % self.divisor
        pw = (self.divisor - w % self.divisor) % self.divisor
        if ph > 0 or pw > 0:
            mode = "reflect" if ph < h and pw < w else "replicate"
            p = nnf.pad(p, [0, pw, 0, ph], mode=mode)
        outs: list[torch.Tensor] = []
        for i in range(0, p.shape[0], self.chunk):
            outs.append(self.net(p[i:i + self.chunk]))
        return torch.cat(outs, 0)[:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, z, y, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]
        m = (z - 1) * self.factor + 1
        up = nnf.interpolate(x, size=[m, y, w], mode="trilinear", align_corners=True)
        if not self.has_net:
            return up
        v = up.reshape(b * c, m, y, w)
        xz = self._planes(v.permute(0, 2, 1, 3).reshape(b * c * y, 1, m, w))
        xz = xz.reshape(b * c, y, m, w).permute(0, 2, 1, 3)
        yz = self._planes(v.permute(0, 3, 1, 2).reshape(b * c * w, 1, m, y))
        yz = yz.reshape(b * c, w, m, y).permute(0, 2, 3, 1)
        if self.geometric:
            out = torch.sqrt(torch.clamp(xz, min=0.0) * torch.clamp(yz, min=0.0))
        else:
            out = 0.5 * (xz + yz)
        return out.reshape(b, c, m, y, w)


def integer_factor(method: str, factor: float) -> int:
    """The factor as an integer, or a one-line :class:`ConfigError` saying why it cannot be exported."""
    f = int(round(factor))
    if abs(factor - f) > 1e-6 * factor:
        raise ConfigError(f"cannot export: the anisotropy factor {factor:g} is not an integer, and a bioimage.io "
                          "output axis needs an integer plane ratio ((n-1)*F+1 planes); train with an integer "
                          "--factor")
    return f


def check_exportable(method: str, factor: float) -> int:
    """Raise a one-line :class:`ConfigError` if ``method`` / ``factor`` cannot be exported; return F."""
    from ..methods.base import is_exportable

    if not is_exportable(method):
        why = NOT_EXPORTABLE.get(method, "it has no bioimage.io export")
        raise ConfigError(f"cannot export a {method} model: {why}")
    return integer_factor(method, factor)


def module_for(m) -> PlaneWiseIsotropic:
    """The eager :class:`PlaneWiseIsotropic` around a loaded method's network."""
    F = check_exportable(m.name, m.factor)
    attr = m.export_net
    net = None if attr is None else getattr(m, attr)
    fusion = getattr(m.params, "fusion", "geometric")
    divisor = int(getattr(net, "divisor", 1)) if net is not None else 1
    return PlaneWiseIsotropic(net.eval() if net is not None else None, F, fusion, divisor).eval()


def build_state_dict_model(method: str, factor: int, voxel_size: list[float], params: dict) -> PlaneWiseIsotropic:
    """The architecture for the package's ``pytorch_state_dict`` weights (an untrained network)."""
    from ..methods.base import build_config, get_method

    cfg = build_config(method, factor=float(factor), voxel_size=voxel_size, params=params)
    return module_for(get_method(method)(cfg))


def script_module(module: PlaneWiseIsotropic, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of ``module``: the network traced (it holds Python-only constructs), the rest scripted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 marks TorchScript deprecated; consumers still need it
        if module.has_net:
            planes = example[:, 0, :, :, 0].reshape(-1, 1, example.shape[2], example.shape[3])
            h = (planes.shape[-2] + module.divisor - 1) // module.divisor * module.divisor
            w = (planes.shape[-1] + module.divisor - 1) // module.divisor * module.divisor
            traced = torch.jit.trace(module.net, torch.zeros(1, 1, h, w), check_trace=False)
            module = PlaneWiseIsotropic(None, module.factor, "geometric" if module.geometric else "arithmetic",
                                        module.divisor, module.chunk)
            module.has_net = True
            module.net = traced
        return torch.jit.script(module.eval())


# ---------------------------------------------------------------------------- loading and restoring


def run_module(module, vol: np.ndarray, *, divisor: int = 1, halo: int = 0, slab_voxels: int = 2**24,
               device: torch.device | str = "cpu", should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Apply a :class:`PlaneWiseIsotropic` (eager or TorchScript) to a normalised ZYX stack in y slabs.

    Slabs start on multiples of ``divisor`` and overlap by ``halo`` (the receptive-field radius),
    so they equal one whole-stack pass to floating-point precision while bounding memory.
    """
    from ..core.errors import Cancelled

    nz, ny, nx = vol.shape
    F = int(module.factor)
    m = (nz - 1) * F + 1
    core = max(divisor, (slab_voxels // max(1, m * nx) - 2 * halo) // divisor * divisor)
    out = np.empty((m, ny, nx), np.float32)
    device = torch.device(device)
    module = module.to(device)
    for y0 in range(0, ny, core):
        if should_stop is not None and should_stop():
            raise Cancelled("restoration stopped on request")
        y1 = min(ny, y0 + core)
        a, b = max(0, (y0 - halo) // divisor * divisor), min(ny, y1 + halo)
        x = torch.from_numpy(np.ascontiguousarray(vol[:, a:b], np.float32))[None, None].to(device)
        with torch.no_grad():
            y = module(x)[0, 0].cpu().numpy()
        out[:, y0:y1] = y[:, y0 - a:y1 - a]
    return out
