"""``isoapp bench``: every method on the phantoms, as a markdown table and JSON."""

from __future__ import annotations

import argparse

from .progress import TqdmProgress


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="evaluate methods on phantoms (PSNR, SSIM, FWHM, SEG, time, memory)",
                       description="Reproduce the seed papers' phantom evaluations. Methods may be given as "
                                   "NAME or NAME:wrongpsf (PSF methods given an axial sigma 50%% too large).")
    p.add_argument("--methods", type=_csv, help="comma-separated; default: every available method")
    p.add_argument("--phantoms", type=_csv, default=["tubes", "beads", "nuclei"])
    p.add_argument("--size", type=int, default=128, help="phantom size S: the ground truth is (S/4+1)xSxS, e.g. "
                                                         "65x256x256 for 256 (default 128)")
    p.add_argument("--factor", type=float, default=4.0)
    p.add_argument("--out", help="folder for bench.json and bench.md")
    p.add_argument("--preset", default="fast")
    p.add_argument("--steps", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace bench.json and bench.md in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.io.safety import check_output_folder
    from ..workflows.bench import format_markdown, run_bench

    if args.out:
        check_output_folder(args.out, ["bench.json", "bench.md"], overwrite=args.overwrite, what="--out")
    progress = TqdmProgress()
    try:
        rows = run_bench(args.methods, args.phantoms, size=args.size, factor=args.factor, preset=args.preset,
                         steps=args.steps, device=args.device, seed=args.seed, out_dir=args.out, emit=progress)
    finally:
        progress.close()
    print(format_markdown(rows))
    return 0
