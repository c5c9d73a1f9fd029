"""Hostile TorchScript, pickles and tampered packages for the package-safety tests and battery (issue 28).

``python hostile_torchscript.py OUT VICTIM PWNED`` writes into OUT: ``ts_evil.pt`` (its forward
overwrites 8 bytes of VICTIM), ``ts_loop.pt`` and ``ts_loop3.pt`` (forward never returns; factor 4
and 3) and ``sd_pickle.pt`` (a state dict whose unpickling would run ``touch PWNED``). Nothing here
is imported by isoapp; :func:`tamper` copies a package with edits, its sha256 sums kept valid.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as nnf
import yaml


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


def tamper(src: Path, dst: Path, *, rdf=None, training=None, replace: dict | None = None, drop: tuple = (),
           rdf_text: str | None = None, rehash: bool = True, extra: list | None = None) -> Path:
    """Copy the package ``src`` to ``dst`` with edits; sha256 sums in rdf.yaml are recomputed."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    if training is not None:
        info = json.loads(files["training.json"])
        training(info)
        files["training.json"] = json.dumps(info).encode()
    files.update(replace or {})
    for n in drop:
        files.pop(n, None)
    doc = yaml.safe_load(files["rdf.yaml"])
    if rdf is not None:
        rdf(doc)
    if rehash:
        stack = [doc]
        while stack:
            o = stack.pop()
            if isinstance(o, dict):
                if isinstance(o.get("source"), str) and o["source"] in files and "sha256" in o:
                    o["sha256"] = hashlib.sha256(files[o["source"]]).hexdigest()
                stack.extend(o.values())
            elif isinstance(o, list):
                stack.extend(o)
    files["rdf.yaml"] = (rdf_text if rdf_text is not None else yaml.safe_dump(doc, sort_keys=False)).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in files.items():
            z.writestr(n, b)
        for info, b in extra or []:
            z.writestr(info, b)
    return dst


if __name__ == "__main__":
    out = sys.argv[1]
    torch.jit.script(Evil(sys.argv[2], 4)).save(out + "/ts_evil.pt")
    torch.jit.script(Loop(4)).save(out + "/ts_loop.pt")
    torch.jit.script(Loop(3)).save(out + "/ts_loop3.pt")
    torch.save({"net.x": Evil2()}, out + "/sd_pickle.pt")
