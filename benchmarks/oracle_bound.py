"""A supervised bound: what IsoNet's network reaches when it is trained on the *true* pairs.

``benchmarks/quality.py`` scores isoapp's methods, which learn from the stack's own lateral
planes, against a reference that no lateral plane shows on some cases (a widefield phantom's
reference is the object under the in-focus lateral PSF only; its lateral planes also carry the
out-of-focus haze). This script asks how much of a shortfall is the method's and how much the
case's: the fast preset's 2D U-Net (IsoNet-2, 16 filters, depth 2; ``--filters``, ``--depth``)
is trained, fully supervised, on xz and yz planes of *other* phantoms from the same generator
(other seeds), with the linearly interpolated acquisition as input and the reference as target,
then restores the test phantom (seed ``--test-seed``) the way IsoNet does (every xz and every yz
plane, the two averaged). It is scored as ``quality.py`` scores a method: PSNR after an affine fit
on the border-cropped region, gain over linear interpolation.

No self-supervised method trained on the stack alone can be expected to beat this bound on the
same network and budget; a target above it is out of reach of the approach, not of the code.
(The bound is not exact: training on other seeds is not training on the test stack, and a larger
net or budget may go higher; ``--filters``/``--steps`` test that.)

Usage::

    OMP_NUM_THREADS=2 python benchmarks/oracle_bound.py --cases nuclei-widefield-20,filaments-gauss-20 \\
        --out /tmp/oracle          # about 1 min per case on 1 core at the defaults

Writes ``oracle_bound.json`` and ``oracle_bound.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import indep_phantoms as ip  # noqa: E402
from quality import crop, fitted_scores, linear_check  # noqa: E402

from isoapp.data.normalize import Normalizer  # noqa: E402
from isoapp.methods.nets import UNet  # noqa: E402


def prepared(structure: str, psf: str, photons: float, factor: float, shape, seed: int):
    """(input, target) volumes on the fine grid: linear interpolation of the acquisition, and the reference."""
    case = ip.make_case(structure, psf, photons, factor, shape=shape, seed=seed)
    acq = Normalizer.fit(case.acquired).before(case.acquired.astype(np.float32))
    lin = linear_check(acq, factor)
    ref = case.reference.astype(np.float32)
    n = min(lin.shape[0], ref.shape[0])
    ref = Normalizer.fit(ref).before(ref)  # same percentiles per seed: one intensity map for every phantom
    return lin[:n], ref[:n]


def planes(vol: np.ndarray) -> list[np.ndarray]:
    """Every xz and yz plane, z along rows."""
    return [vol[:, y, :] for y in range(vol.shape[1])] + [vol[:, :, x] for x in range(vol.shape[2])]


def train(pairs: list[tuple[np.ndarray, np.ndarray]], steps: int, batch: int, patch: int, lr: float,
          seed: int, filters: int = 16, depth: int = 2) -> UNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs = [p for x, _ in pairs for p in planes(x)]
    ys = [p for _, y in pairs for p in planes(y)]
    net = UNet(2, depth=depth, n_filters=filters, residual=True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(steps):
        xb, yb = [], []
        for _ in range(batch):
            i = int(rng.integers(len(xs)))
            h, w = xs[i].shape
            r0, c0 = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
            xb.append(xs[i][r0:r0 + patch, c0:c0 + patch])
            yb.append(ys[i][r0:r0 + patch, c0:c0 + patch])
        x = torch.from_numpy(np.stack(xb)[:, None])
        y = torch.from_numpy(np.stack(yb)[:, None])
        loss = torch.nn.functional.l1_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 5) == 0:
            print(f"  step {step:5d} loss {loss.item():.4f}", flush=True)
    return net


@torch.no_grad()
def restore(net: UNet, vol: np.ndarray) -> np.ndarray:
    """Every xz and every yz plane restored whole (reflect-padded to the net's divisor), averaged."""
    d = net.divisor
    out = np.zeros_like(vol)
    for axis in (1, 2):
        stack = np.moveaxis(vol, axis, 0)  # (planes, z, other)
        nz, nw = stack.shape[1:]
        pz, pw = (-nz) % d, (-nw) % d
        x = np.pad(stack, ((0, 0), (0, pz), (0, pw)), mode="reflect")
        res = np.concatenate([net(torch.from_numpy(x[i:i + 16, None])).numpy()[:, 0] for i in range(0, len(x), 16)])
        out += np.moveaxis(res[:, :nz, :nw], 0, axis)
    return out / 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="nuclei-widefield-20,nuclei-widefield-100,filaments-widefield-20,"
                                       "membranes-widefield-20,filaments-gauss-20,membranes-confocal-20",
                    help="STRUCTURE-PSF-PHOTONS, comma-separated")
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--planes", type=int, default=33)
    ap.add_argument("--train-seeds", default="1,2")
    ap.add_argument("--test-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--filters", type=int, default=16, help="U-Net filters at the first level (IsoNet fast: 16)")
    ap.add_argument("--depth", type=int, default=2, help="U-Net poolings (IsoNet fast: 2)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    shape = (args.planes, args.size, args.size)
    seeds = [int(s) for s in args.train_seeds.split(",")]
    if args.test_seed in seeds:
        ap.error("--test-seed must not be one of --train-seeds (the bound would be scored on its training data)")
    rows = []
    for spec in args.cases.split(","):
        structure, psf, photons = spec.split("-")
        t0 = time.time()
        pairs = [prepared(structure, psf, float(photons), args.factor, shape, s) for s in seeds]
        lin, ref = prepared(structure, psf, float(photons), args.factor, shape, args.test_seed)
        print(f"{spec}: training on seeds {seeds}", flush=True)
        net = train(pairs, args.steps, args.batch, args.patch, args.lr, args.test_seed, args.filters, args.depth)
        out = restore(net, lin)
        lin_s = fitted_scores(crop(lin, args.factor), crop(ref, args.factor))
        out_s = fitted_scores(crop(out, args.factor), crop(ref, args.factor))
        rows.append({"case": f"{structure}-{psf}-{photons}ph-F{args.factor:g}", "linear_psnr": round(lin_s["psnr"], 2),
                     "bound_gain_db": round(out_s["psnr"] - lin_s["psnr"], 2),
                     "bound_ssim_gain": round(out_s["ssim"] - lin_s["ssim"], 3), "seconds": round(time.time() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "oracle_bound.json").write_text(json.dumps({"args": meta, "rows": rows}, indent=1))
    md = ["| case | linear PSNR | supervised bound, gain over linear (dB) | SSIM gain |", "|---|---|---|---|"]
    md += [f"| {r['case']} | {r['linear_psnr']:.2f} | {r['bound_gain_db']:+.2f} | {r['bound_ssim_gain']:+.3f} |"
           for r in rows]
    (args.out / "oracle_bound.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
