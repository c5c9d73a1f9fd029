"""Benchmark Park et al.'s 3D OT-cycleGAN on the tubes and beads phantoms (a script, not a test).

Targets (GitHub issue 5): tubes PSNR gain >= +2 dB over linear interpolation with the fast preset;
learned-PSF axial FWHM within 20 % of the true one on tubes and beads; time per iteration; the
fast preset restores a 65x256x256 stack end to end in <= 10 min on 2 CPU cores.

The fast preset holds F at the axial blur estimated from the stack's spectra and adds lateral
self-supervision of G through it (``lambda_lateral``); Park's form (F learned from a narrow
start, no lateral term, plain cycle) is
``--params '{"blur_init_axial": "sigma", "blur_freeze": 0, "lambda_lateral": 0, "physical_sampling": false,
"blur_padding": "zeros"}' --train '{"lr": 4e-4}'``. Timings: run with ``OMP_NUM_THREADS=1 ... --threads 1``
on a shared 2-core machine; one thread's wall time bounds the 2-core time from above.

Usage::

    python benchmarks/bench_otcyclegan.py                      # 65x256x256 inputs (gt 257x256x256), fast
    python benchmarks/bench_otcyclegan.py --shape 129 128 128 --steps 200 --kinds tubes
    python benchmarks/bench_otcyclegan.py --shape 129 96 96 --kinds tubes --steps 150 --threads 1 \
        --params '{"lambda_lateral": 0}'
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time

import torch

from isoapp.core.memory import peak_rss_bytes
from isoapp.physics.psf import sigma_to_fwhm
from isoapp.quality.metrics import compute_metrics
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore

log = logging.getLogger("bench_otcyclegan")


def true_psf(ph) -> dict[str, float]:
    """FWHM (px of the isotropic grid) of the phantom's total PSF and of the axial blur beyond gt_iso."""
    p = ph.params
    return {"axial": sigma_to_fwhm(p["sigma_z"]), "lateral": sigma_to_fwhm(p["sigma_iso"]),
            "axial_extra": sigma_to_fwhm(math.sqrt(max(p["sigma_z"] ** 2 - p["sigma_iso"] ** 2, 0.0)))}


def run(kind: str, shape: tuple[int, int, int], preset: str, steps: int | None, threads: int,
        params: dict | None = None, train: dict | None = None, noise: bool = False) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ph = make_phantom(kind, shape, factor=4, seed=0, noise=noise)
    t_ph = time.perf_counter() - t0
    ref = ph.gt_iso.data
    lin = restore(ph.degraded, "linear", device="cpu").volume.data
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    r = restore(ph.degraded, "otcyclegan", preset=preset, steps=steps, device="auto", params=params, train=train)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    out = r.volume.data
    ref = ref[: out.shape[0]]
    m_lin, m_otc = compute_metrics(ref, lin), compute_metrics(ref, out)
    rep = r.method.report()
    tp = true_psf(ph)
    return {"kind": kind, "input": ph.degraded.shape, "phantom_s": t_ph, "wall_s": wall, "cpu_s": cpu,
            "train_s": r.train_seconds, "restore_s": r.restore_seconds, "steps": r.info["steps"],
            "device": r.info["device"], "psnr_lin": m_lin["psnr"], "psnr": m_otc["psnr"], "ssim_lin": m_lin["ssim"],
            "ssim": m_otc["ssim"], "rep": rep, "true": tp, "voxel_um": ph.params["voxel_um"],
            "peak_rss_gb": peak_rss_bytes() / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(257, 256, 256), help="ground-truth shape (Z Y X); the "
                    "input has (Z-1)/4+1 planes (257 -> 65)")
    ap.add_argument("--kinds", nargs="+", default=["tubes", "beads"])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params", type=json.loads, default=None, help='parameter overrides as JSON, e.g. '
                    '\'{"physical_sampling": false}\'')
    ap.add_argument("--train", type=json.loads, default=None, help="training overrides as JSON, e.g. '{\"lr\": 1e-3}'")
    ap.add_argument("--noise", action="store_true", help="Poisson (100 photons) and read noise (1) on the input")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rows = [run(k, tuple(args.shape), args.preset, args.steps, args.threads, args.params, args.train, args.noise)
            for k in args.kinds]
    print(f"\nOT-cycleGAN benchmark, preset {args.preset}, {args.threads} torch threads, "
          f"{torch.get_num_threads()} threads in use; params {args.params}, train {args.train}"
          f"{', noisy input' if args.noise else ''}")
    for r in rows:
        rep, tp, vx = r["rep"], r["true"], r["voxel_um"]
        ax, lat = rep["psf_fwhm_axial_px"], rep["psf_fwhm_lateral_px"]
        print(f"\n== {r['kind']}: input {r['input']} on {r['device']}, {r['steps']} steps")
        print(f"  PSNR vs gt_iso   otcyclegan {r['psnr']:.2f} dB | linear {r['psnr_lin']:.2f} dB | "
              f"gain {r['psnr'] - r['psnr_lin']:+.2f} dB (target >= +2 dB on tubes)")
        print(f"  SSIM             otcyclegan {r['ssim']:.4f}  | linear {r['ssim_lin']:.4f}")
        print(f"  time             train {r['train_s']:.0f} s, restore {r['restore_s']:.0f} s, end to end "
              f"{r['wall_s']:.0f} s wall / {r['cpu_s']:.0f} s CPU (target <= 600 s on 2 cores); "
              f"{rep.get('seconds_per_step', float('nan')):.2f} s per iteration (wall)")
        print(f"  learned PSF      axial {ax:.2f} px = {ax * vx:.3f} µm, lateral {lat:.2f} px = {lat * vx:.3f} µm")
        print(f"  true PSF         axial {tp['axial']:.2f} px = {tp['axial'] * vx:.3f} µm (error "
              f"{100 * (ax / tp['axial'] - 1):+.0f} %, target within 20 %), lateral {tp['lateral']:.2f} px; "
              f"axial blur beyond gt_iso {tp['axial_extra']:.2f} px")
        if "axial_fwhm_estimate_px" in rep:
            print(f"  spectral estimate of the axial blur beyond the lateral one: FWHM {rep['axial_fwhm_estimate_px']:.2f} px "
                  f"(from the stack's axial/lateral spectra; compare 'axial blur beyond gt_iso')")
        print(f"  parameters       G {rep['parameters_G']:,}, F {rep['parameters_F']:,}, discriminators "
              f"{rep.get('parameters_discriminators', 0):,}; phantom {r['phantom_s']:.0f} s; "
              f"peak RSS {r['peak_rss_gb']:.2f} GiB")


if __name__ == "__main__":
    main()
