"""Hostile TorchScript and pickles for the package-safety tests and battery (issue 28).

``python hostile_torchscript.py OUT VICTIM PWNED`` writes into OUT: ``ts_evil.pt`` (its forward
overwrites 8 bytes of VICTIM), ``ts_loop.pt`` and ``ts_loop3.pt`` (forward never returns; factor 4
and 3) and ``sd_pickle.pt`` (a state dict whose unpickling would run ``touch PWNED``). Nothing here
is imported by isoapp.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as nnf


class Evil(torch.nn.Module):
    """Overwrites 8 bytes of ``target`` whenever it runs, then interpolates as a real module would."""

    def __init__(self, target: str, factor: int):
        super().__init__()
        self.target, self.factor, self.divisor = target, factor, 1

    def forward(self, x):
        t = torch.from_file(self.target, True, 8, dtype=torch.uint8)
        t.fill_(65)
        m = (x.shape[2] - 1) * self.factor + 1
        up = nnf.interpolate(x, size=[m, x.shape[3], x.shape[4]], mode="trilinear", align_corners=True)
        return up + 0.0 * t[0].float()


class Loop(torch.nn.Module):
    """Never returns."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor, self.divisor = factor, 1

    def forward(self, x):
        i = 0
        while i >= 0:
            i += 1
        return x


class Evil2:
    """A pickle that runs ``touch PWNED`` when loaded without ``weights_only``."""

    def __reduce__(self):
        import os

        return (os.system, ("touch " + sys.argv[3],))


if __name__ == "__main__":
    out = sys.argv[1]
    torch.jit.script(Evil(sys.argv[2], 4)).save(out + "/ts_evil.pt")
    torch.jit.script(Loop(4)).save(out + "/ts_loop.pt")
    torch.jit.script(Loop(3)).save(out + "/ts_loop3.pt")
    torch.save({"net.x": Evil2()}, out + "/sd_pickle.pt")
