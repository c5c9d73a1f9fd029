"""Benchmark Self-Net against the targets of its issue (fast preset, CPU by default).

* beads phantom (widefield PSF, 305 nm lateral / 1000 nm axial FWHM, z step ``--factor`` lateral
  pixels): axial vs lateral bead FWHM after restoration (target: axial <= 1.1 x lateral);
* tubes phantom: PSNR/SSIM against ``gt_iso`` for Self-Net, linear interpolation, IsoNet with the
  true Gaussian PSF and IsoNet with a wrong one (axial sigma off by +-50 %) (targets: within 1 dB
  of IsoNet-true, better than IsoNet-wrong);
* timings: per stage, per epoch, training, prediction and end to end; peak RSS.

``--time-input`` additionally restores a degraded stack of exactly 65 x 256 x 256 (made from a
257 x 256 x 256 phantom at factor 4) end to end (target: <= 10 min on 2 CPU cores).

Run: ``python benchmarks/bench_selfnet.py [--shape 65 256 256] [--threads 2] [--time-input]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch

from isoapp.core.memory import peak_rss_bytes
from isoapp.quality.metrics import bead_fwhm, compute_metrics
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore


def peak_rss_mib() -> float:
    return peak_rss_bytes() / 2**20


def candidates(ph, args, wrong_psf: bool) -> list[tuple[str, str, dict]]:
    """(label, method, restore kwargs): linear, Self-Net, IsoNet with the true PSF (and wrong ones)."""
    scales = [("true PSF", 1.0)] + ([("sigma_z x1.5", 1.5), ("sigma_z x0.5", 0.5)] if wrong_psf else [])
    out = [("linear", "linear", {}), ("selfnet", "selfnet", {"steps": args.steps} if args.steps else {})]
    if not args.skip_isonet:
        out += [(f"isonet ({label})", "isonet", {"psf": {"kind": "gaussian", "fwhm_um": ph.psf_fwhm_um(k)}})
                for label, k in scales]
    return out


def run_rows(kind: str, ph, args, wrong_psf: bool, extra=None) -> list[dict]:
    """Restore ``ph.degraded`` with each candidate; PSNR/SSIM against gt_iso, time, memory, ``extra(volume)``."""
    rows = []
    for name, method, kw in candidates(ph, args, wrong_psf):
        t0 = time.perf_counter()
        r = restore(ph.degraded, method, preset="fast", device="cpu", seed=args.seed, **kw)
        wall = time.perf_counter() - t0
        m = compute_metrics(ph.gt_iso.data, r.volume.data)
        row = {"phantom": kind, "method": name, "psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 4),
               **(extra(r.volume.data) if extra else {}), "wall_s": round(wall, 1), "rss_mib": round(peak_rss_mib())}
        if method == "selfnet":
            row["report"] = r.method.report()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def tubes(args) -> list[dict]:
    ph = make_phantom("tubes", tuple(args.shape), factor=args.factor, seed=args.seed, noise=args.noise)
    return run_rows("tubes", ph, args, wrong_psf=True)


def beads(args) -> list[dict]:
    ph = make_phantom("beads", tuple(args.shape), factor=args.factor, seed=args.seed, noise=args.noise)
    vs = ph.gt.voxel_size
    centres = ph.params["centres"]
    ref = bead_fwhm(ph.gt_iso.data, centres, vs)
    print(json.dumps({"phantom": "beads", "method": "gt_iso", "fwhm_axial_um": round(ref["fwhm_axial"], 3),
                      "fwhm_lateral_um": round(ref["fwhm_lateral"], 3), "n": ref["n"]}), flush=True)

    def fwhm(vol) -> dict:
        fw = bead_fwhm(vol, centres, vs)
        return {"fwhm_axial_um": round(fw["fwhm_axial"], 3), "fwhm_lateral_um": round(fw["fwhm_lateral"], 3),
                "axial_over_lateral": round(fw["fwhm_axial"] / fw["fwhm_lateral"], 3), "n_beads": fw["n"]}

    return run_rows("beads", ph, args, wrong_psf=False, extra=fwhm)


def time_input(args) -> dict:
    nz = (65 - 1) * 4 + 1
    ph = make_phantom("tubes", (nz, 256, 256), factor=4, seed=args.seed)
    assert ph.degraded.data.shape == (65, 256, 256), ph.degraded.data.shape
    t0 = time.perf_counter()
    r = restore(ph.degraded, "selfnet", preset="fast", device="cpu", seed=args.seed)
    wall = time.perf_counter() - t0
    lin = restore(ph.degraded, "linear", device="cpu").volume.data
    m, ml = compute_metrics(ph.gt_iso.data, r.volume.data), compute_metrics(ph.gt_iso.data, lin)
    row = {"phantom": "tubes 65x256x256 input", "method": "selfnet", "end_to_end_s": round(wall, 1),
           "psnr": round(m["psnr"], 2), "psnr_linear": round(ml["psnr"], 2), "rss_mib": round(peak_rss_mib()),
           "report": r.method.report()}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(65, 256, 256), help="phantom (gt) shape Z Y X")
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=None, help="override the fast preset's steps per stage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise", action="store_true")
    ap.add_argument("--only", choices=["tubes", "beads", "time"], nargs="*", default=["tubes", "beads"])
    ap.add_argument("--skip-isonet", action="store_true")
    ap.add_argument("--time-input", action="store_true", help="also time a 65x256x256 input end to end")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t0 = time.perf_counter()
    rows: list[dict] = []
    if "beads" in args.only:
        rows += beads(args)
    if "tubes" in args.only:
        rows += tubes(args)
    if args.time_input or "time" in args.only:
        rows.append(time_input(args))
    print(f"\n=== Self-Net benchmark (fast preset, CPU, {args.threads} threads), phantom {tuple(args.shape)}, "
          f"factor {args.factor:g} ===")
    print(f"{'phantom':<24}{'method':<24}{'PSNR':>8}{'SSIM':>8}{'ax/lat':>8}{'wall s':>9}")
    for r in rows:
        print(f"{r.get('phantom', ''):<24}{r.get('method', ''):<24}{r.get('psnr', float('nan')):>8}"
              f"{r.get('ssim', ''):>8}{r.get('axial_over_lateral', ''):>8}{r.get('wall_s', r.get('end_to_end_s', '')):>9}")
    for r in rows:
        if "report" in r:
            rep = r["report"]
            print(f"{r['phantom']}: per-epoch s {rep.get('epoch_s')}, stage1 s {rep.get('stage1_s')}, stage2 s "
                  f"{rep.get('stage2_s')}, train {rep.get('train_s')} s, predict {rep.get('predict_s')} s, params "
                  f"G {rep.get('parameters_generators')} D {rep.get('parameters_discriminators')} "
                  f"DeblurNet {rep.get('parameters_deblurnet')}")
    print(f"peak RSS {peak_rss_mib():.0f} MiB, total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
