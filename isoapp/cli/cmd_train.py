"""``isoapp train``: fit a method on a stack and save the model, without restoring (then ``restore --model``).

For large stacks this is the first half of the block-wise workflow: training reads only a bounded,
signal-rich region of the stack (``--train-budget-mb``) and the normaliser comes from a bounded
sample, so a stack of any size trains in bounded memory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import ConfigError, OutputError
from .options import add_check_option, add_method_options, add_psf_options, parse_params, psf_spec
from .progress import TqdmProgress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a method on a stack and save the model (restore later with --model)",
                       description="Train a method on the stack itself and save it for `isoapp restore --model`. "
                                   "Stacks larger than the training budget train on their most signal-rich region.")
    from ..data.io.registry import input_help

    p.add_argument("input", help=f"input stack ({input_help()})")
    p.add_argument("--save-model", required=True, metavar="DIR", help="folder for config.json and weights.pt")
    p.add_argument("--method", default=None,
                   help="method id (default auto, as for restore: trains the fast candidates and keeps the best); "
                        "--methods lists them")
    p.add_argument("--factor", type=float, help="anisotropy factor F = dz/dxy (default: from the voxel size)")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel size in µm")
    add_psf_options(p)
    p.add_argument("--dataset", help="HDF5/Zarr dataset path inside the input file")
    p.add_argument("--train-budget-mb", type=float, default=384.0, metavar="MB",
                   help="memory for the region the method trains on (default 384)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --save-model")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_check_option(p)
    add_method_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.memory import peak_rss_bytes
    from ..data.io import read_volume
    from ..data.io.safety import PlannedOutput, check_outputs
    from ..methods import default_method, get_method
    from ..run.restorer import Restorer

    args.method = args.method or default_method()
    if not get_method(args.method).trainable:
        raise ConfigError(f"{args.method} does not train; restore with it directly (isoapp restore --method "
                          f"{args.method})")
    if args.train_budget_mb <= 0:
        raise ConfigError("--train-budget-mb must be positive")
    out = Path(args.save_model).expanduser()
    check_outputs([PlannedOutput(out, "--save-model", "folder")], [("input", args.input), ("--psf", args.psf)],
                  overwrite=args.overwrite)
    if not args.overwrite and [*out.glob("config.json"), *out.glob("channel_*/config.json")]:
        raise OutputError(f"--save-model {out} already holds a model; add --overwrite to replace it")
    vol = read_volume(args.input, dataset=args.dataset, lazy=True)
    progress = TqdmProgress()
    try:
        r = Restorer(args.method, preset=args.preset, factor=args.factor, voxel_size=args.voxel_size,
                     psf=psf_spec(args), steps=args.steps,
                     device=args.device, seed=args.seed, params=parse_params(args.param), emit=progress,
                     train_budget_bytes=int(args.train_budget_mb * 2**20),
                     **({"check": args.check} if args.check else {})).fit(vol)
    finally:
        progress.close()
    r.save(out)
    info = {**r.info(), "model": str(out), "train_seconds": round(r.train_seconds, 2),
            "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1)}
    if args.json:
        print(json.dumps(info, default=float))
    else:
        print(f"saved {info['method']} model to {out} (trained {r.train_seconds:.1f} s, factor {r.factor:.3g}, "
              f"peak memory {info['peak_rss_mb']:.0f} MiB); restore with: isoapp restore IN -o OUT.zarr --model {out}")
    return 0
