"""How well the blind blur estimate finds the axial blur, on stacks isoapp did not make.

Two kinds of truth:

* **Independent phantoms** (``benchmarks/indep_phantoms.py``): filaments, nuclei and membranes
  with a Gaussian, widefield or confocal PSF, at the given photon levels and seeds. The truth is
  the FWHM-based ``true_axial_sigma_px`` (for optical PSFs it understates what their axial tails
  do to extended objects; see docs/QUALITY.md).
* **Real beads** (``beads_confocal.tif`` in ``../shared/data``, four sub-resolution beads, confocal,
  0.125 / 0.0225 µm): the truth is measured on the beads themselves, the axial and lateral FWHM of
  each bead's profiles through its maximum, ``sqrt(sz^2 - sxy^2)`` in lateral pixels.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/blur_estimate.py --out /tmp/blur  # ~2 min on 2 cores

Writes ``blur_estimate.md`` and ``blur_estimate.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import indep_phantoms as ip  # noqa: E402

from isoapp.data.normalize import Normalizer  # noqa: E402
from isoapp.physics.degradation import estimate_degradation  # noqa: E402

BEADS = ("beads_confocal.tif", 0.125, 0.0225)  # file, z step and pixel size (µm), from the data README


def phantom_rows(args) -> list[dict]:
    shape = tuple(int(v) for v in args.shape.split("x"))
    rows = []
    for structure, psf, photons, seed in itertools.product(args.structures.split(","), args.psfs.split(","),
                                                           [float(p) for p in args.photons.split(",")],
                                                           range(args.seeds)):
        case = ip.make_case(structure, psf, photons, args.factor, shape=shape, seed=seed)
        x = Normalizer.fit(case.acquired).before(case.acquired.astype(np.float32))
        est = estimate_degradation(x, args.factor).axial_sigma_px
        true = case.params["true_axial_sigma_px"]
        rows.append({"case": f"{structure}-{psf}-{photons:g}ph", "seed": seed, "true_px": round(true, 3),
                     "estimated_px": round(est, 3), "rel_error": round(est / true - 1, 3)})
        print(f"{rows[-1]['case']:28s} seed {seed}: true {true:5.2f} estimated {est:5.2f} "
              f"({100 * rows[-1]['rel_error']:+.0f} %)", flush=True)
    return rows


def bead_row(data: Path) -> dict | None:
    import tifffile

    fname, dz, dxy = BEADS
    path = data / fname
    if not path.exists():
        print(f"{path} not found: the real-bead check is skipped (pass --data DIR)")
        return None
    v = tifffile.imread(path).astype(np.float32)
    factor = dz / dxy
    smooth = ndimage.gaussian_filter(v, 1)
    peaks = np.argwhere((smooth == ndimage.maximum_filter(smooth, size=(5, 25, 25))) & (smooth > 0.3 * smooth.max()))
    bg = float(np.median(v))
    extra = []
    for z, y, x in peaks:
        if not (3 <= z < v.shape[0] - 3 and 10 <= y < v.shape[1] - 10 and 10 <= x < v.shape[2] - 10):
            continue
        fz = ip.profile_fwhm(v[:, y, x] - bg) * factor
        fxy = 0.5 * (ip.profile_fwhm(v[z, y, :] - bg) + ip.profile_fwhm(v[z, :, x] - bg))
        sz, sxy = fz / ip.FWHM_PER_SIGMA, fxy / ip.FWHM_PER_SIGMA
        extra.append(math.sqrt(max(sz * sz - sxy * sxy, 0.0)))
    true = float(np.median(extra))
    est = estimate_degradation(Normalizer.fit(v).before(v), factor).axial_sigma_px
    row = {"case": f"real {fname} ({len(extra)} beads)", "seed": None, "true_px": round(true, 3),
           "estimated_px": round(est, 3), "rel_error": round(est / true - 1, 3),
           "bead_extra_sigma_px": [round(e, 2) for e in extra]}
    print(f"{row['case']}: measured on the beads {true:.2f} px, estimated blind {est:.2f} px "
          f"({100 * row['rel_error']:+.0f} %)")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", default="49x160x160", help="acquired phantom shape, ZxYxX")
    ap.add_argument("--structures", default="filaments,nuclei,membranes")
    ap.add_argument("--psfs", default="gauss,widefield,confocal")
    ap.add_argument("--photons", default="50")
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    args = ap.parse_args()
    rows = phantom_rows(args)
    bead = bead_row(Path(args.data))
    if bead is not None:
        rows.append(bead)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "blur_estimate.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    lines = ["# Blind axial blur estimate vs the truth", "", f"`{' '.join(sys.argv)}`", "",
             "| case | seed | true sigma (px) | estimated (px) | error |", "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['seed'] if r['seed'] is not None else '-'} | {r['true_px']:.2f} | "
              f"{r['estimated_px']:.2f} | {100 * r['rel_error']:+.0f} % |" for r in rows]
    (out / "blur_estimate.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'blur_estimate.md'}")


if __name__ == "__main__":
    main()
