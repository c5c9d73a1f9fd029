"""``isoapp restore``: train (or load) a method on a stack and write the isotropic result."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from ..core.errors import Cancelled, ConfigError, IsoappError, ModelError, OutputError
from .checkpoints import (
    check_existing_work,
    default_work_dir,
    guarded_run,
    remove_checkpoints,
    with_resume_hint,
)
from .options import add_check_option, add_method_options, add_psf_options, parse_params, psf_spec
from .progress import TqdmProgress
from .summary import quality_lines, write_residual_map, write_rl_beside

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore isotropic resolution of a stack",
                       description="Train a method on the stack itself (or load a saved model) and write the "
                                   "restored stack on a z grid of dz/F. Every path the run writes is checked "
                                   "before any work; existing outputs are kept unless --overwrite is given.")
    from ..data.io.registry import describe_blockwise, describe_writable, input_help

    p.add_argument("input", help=f"input stack ({input_help()})")
    p.add_argument("-o", "--output", required=True,
                   help=f"output: {describe_writable()}; block-wise runs write {describe_blockwise()}")
    p.add_argument("--method", default=None,
                   help="method id (default auto: trains the fast candidates and keeps the best on held-out "
                        "planes, else cubic); --methods lists them; with --model the saved model's method is used "
                        "and --method may only repeat it")
    p.add_argument("--factor", type=float, help="anisotropy factor F = dz/dxy (default: from the voxel size)")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel size in µm")
    add_psf_options(p)
    m = p.add_mutually_exclusive_group()
    m.add_argument("--save-model", metavar="DIR", help="save the trained model (config.json + weights.pt)")
    m.add_argument("--model", metavar="DIR", help="restore with a saved model, without training")
    p.add_argument("--trust-torchscript", action="store_true",
                   help="with --model NAME.zip: run the package's TorchScript (code, with your rights; in a child "
                        "process) when isoapp cannot rebuild its network itself; only for packages you trust")
    p.add_argument("--dtype", choices=("float32", "uint16"), default="float32",
                   help="output type; block-wise uint16 output of an integer stack keeps its intensity units")
    p.add_argument("--dataset", help="HDF5 dataset path inside the input file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (and model files in --save-model); a .zarr folder holding "
                        "files isoapp did not write is never replaced")
    p.add_argument("--work-dir", metavar="DIR",
                   help="checkpoint folder (default: OUTPUT.isoapp-checkpoints beside the output, removed after "
                        "a successful run)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    p.add_argument("--checkpoint-seconds", type=float, metavar="S",
                   help="checkpoint at least every S seconds of training (default 30; 0: by steps only)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_check_option(p)
    p.add_argument("--also-rl", metavar="FILE",
                   help="also write Richardson-Lucy deconvolution with the same PSF (the rl method, same preset) to "
                        "FILE, to hold beside the result; ImageJ TIFFs of both get one display range")
    p.add_argument("--residual-map", metavar="FILE",
                   help="write the data-consistency residual (recorded planes minus the restored stack put through "
                        "the degradation model, in noise sigmas, on the input grid) to FILE (in-memory runs)")
    b = p.add_argument_group("large stacks (block-wise restoration; docs/SCALING.md)")
    mode = b.add_mutually_exclusive_group()
    mode.add_argument("--blockwise", action="store_true",
                      help="restore block by block straight to the output file (default: when the stack and its "
                           "result would not fit in memory, or with --workers/--scheduler/--block-size)")
    mode.add_argument("--in-memory", action="store_true", help="restore the whole stack in memory")
    b.add_argument("--block-size", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="block edges in output voxels (default: the shape with the least halo work within "
                        "512 MiB per block, or half the free memory if less); smaller blocks need less memory")
    b.add_argument("--workers", type=int, metavar="N", help="run the blocks on a local Dask cluster of N processes")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the blocks on an existing Dask cluster (e.g. tcp://10.0.0.1:8786); the workers must "
                        "read the input and write the output at the same paths")
    b.add_argument("--train-budget-mb", type=float, metavar="MB",
                   help="memory for the region a method trains on (default 384); larger stacks train on their "
                        "most signal-rich region of this size")
    add_method_options(p)
    p.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    if args.psf_fwhm is not None and not all(math.isfinite(v) and v > 0 for v in args.psf_fwhm):
        raise ConfigError("--psf-fwhm needs three positive PSF widths (FWHM) in µm, z y x; got "
                          + " ".join(f"{v:g}" for v in args.psf_fwhm))
    if args.block_size is not None and min(args.block_size) < 1:
        raise ConfigError("--block-size needs three positive edges in output voxels (z y x), e.g. 64 512 512")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.scheduler:  # a malformed, unresolvable or silent address: one line before any work, bounded in time
        from ..run.cluster_guard import probe_scheduler

        probe_scheduler(args.scheduler)
    if args.checkpoint_seconds is not None and not (math.isfinite(args.checkpoint_seconds)
                                                    and args.checkpoint_seconds >= 0):
        raise ConfigError(f"--checkpoint-seconds must be >= 0 (0: checkpoint by steps only), "
                          f"got {args.checkpoint_seconds:g}")


def model_method(model_dir: str, trust_torchscript: bool = False) -> str:
    """The method a ``--model`` folder was saved with; ModelError for a missing or malformed folder."""
    from ..interop.bioimageio import is_package, package_model
    from ..training.bounds import check_run_config
    from ..training.config import RunConfig

    d = Path(model_dir).expanduser()
    if is_package(d):  # a bioimage.io package (.zip) exported by isoapp
        return package_model(d, trust_torchscript=trust_torchscript).config.method
    if not d.exists():
        raise ModelError(f"the --model folder {model_dir} does not exist; give the folder written by --save-model")
    if not d.is_dir():
        raise ModelError(f"--model {model_dir} is a file; give the folder written by --save-model "
                         "(it holds config.json and weights.pt) or a bioimage.io package (.zip) from isoapp export")
    first = d / "channel_0" if (d / "channel_0").is_dir() else d
    return check_run_config(RunConfig.load(first), str(first / "config.json")).method


def resolve_method(args: argparse.Namespace) -> str:
    """The method to run: ``--method`` (default :func:`~isoapp.methods.default_method`), or the saved model's,
    refusing a conflict."""
    from ..methods import default_method, get_method

    if args.model:
        saved = model_method(args.model, getattr(args, "trust_torchscript", False))
        if args.method and args.method != saved:
            raise ConfigError(f"--method {args.method} conflicts with --model {args.model}, which holds a {saved} "
                              f"model; drop --method (or give --method {saved}) to restore with it, or drop --model "
                              f"to train {args.method}")
        get_method(saved)
        return saved
    method = args.method or default_method()
    get_method(method)  # unknown method: one line before any work
    return method


def _estimate_output(vol, factor: float | None, voxel_size, dtype: str, fmt: str) -> int:
    """Bytes of the restored stack: z grows to floor((nz-1)F)+1 planes."""
    import numpy as np

    from ..data.io.safety import estimate_volume_bytes
    from ..physics.forward import output_length
    from ..run.resolve import sizing_factor

    shape = list(vol.shape)
    shape[-3] = output_length(shape[-3], sizing_factor(vol, factor, voxel_size))
    return estimate_volume_bytes(shape, np.dtype(dtype).itemsize, chunked=fmt in ("hdf5", "ome-zarr"))




def wants_blockwise(args: argparse.Namespace, vol, fmt: str) -> bool:
    """Block-wise when asked, or when the stack and its float32 result would take over half the free memory."""
    if args.in_memory:
        if args.workers or args.scheduler:
            raise ConfigError("--workers and --scheduler restore block by block; drop --in-memory")
        return False
    if args.blockwise or args.workers or args.scheduler or args.block_size:
        return True
    from ..core.memory import available_bytes
    from ..run.restore import in_memory_need

    need = in_memory_need(vol, args.factor, args.voxel_size)
    if need <= 0.5 * available_bytes():
        return False
    from ..data.io.registry import blockwise_formats, describe_blockwise

    if fmt not in blockwise_formats():
        raise ConfigError(f"{vol.name} needs about {need / 2**30:.1f} GiB to restore in memory; write the result "
                          f"block by block to {describe_blockwise()} instead")
    log.info("restoring block by block: in memory it would need about %.1f GiB", need / 2**30)
    return True


def run(args: argparse.Namespace) -> int:
    """Lock the output and work folder for the whole run (a second run on them refuses), then run."""
    from ..data.io.locks import lock_paths
    from .guards import restore_lock_targets

    with lock_paths(restore_lock_targets(args)):
        return _run_unlocked(args)


def _run_unlocked(args: argparse.Namespace) -> int:
    from ..data.io import output_format, read_volume, write_volume
    from ..data.io.safety import PlannedOutput, check_collisions, check_outputs
    from ..run.restore import restore

    _check_options(args)
    method = resolve_method(args)
    fmt = output_format(args.output)  # an unknown extension: one line before any work
    out = Path(args.output).expanduser().absolute()
    vol = read_volume(args.input, dataset=args.dataset, lazy=True)
    blockwise = wants_blockwise(args, vol, fmt)

    from ..methods import get_method

    trains = (get_method(method).trainable and not args.model) or blockwise
    default_wd = args.work_dir is None and trains
    work_dir = Path(args.work_dir).expanduser().absolute() if args.work_dir else (
        default_work_dir(out) if trains else None)
    reads = [("input", args.input), ("--psf", args.psf), ("--model", args.model)]
    size = _estimate_output(vol, args.factor, args.voxel_size, args.dtype, fmt)
    if blockwise and fmt == "ome-zarr":
        size = size * 8 // 7  # the pyramid's halved levels add at most 1/7
    outputs = [PlannedOutput(out, "-o", "volume", size, zarr=fmt == "ome-zarr")]
    if args.residual_map:
        if blockwise:
            raise ConfigError("--residual-map needs an in-memory run; drop --blockwise/--workers/--block-size, or "
                              "--residual-map")
        output_format(args.residual_map)
        outputs.append(PlannedOutput(Path(args.residual_map).expanduser().absolute(), "--residual-map", "volume",
                                     4 * int(vol.nbytes // max(vol.dtype.itemsize, 1))))
    if getattr(args, "also_rl", None):
        if blockwise:
            raise ConfigError("--also-rl needs an in-memory run; drop --blockwise/--workers/--block-size, or --also-rl")
        output_format(args.also_rl)
        outputs.append(PlannedOutput(Path(args.also_rl).expanduser().absolute(), "--also-rl", "volume", size))
    if args.save_model:
        outputs.append(PlannedOutput(Path(args.save_model), "--save-model", "folder"))
    if work_dir is not None:
        outputs.append(PlannedOutput(work_dir, "--work-dir", "folder"))
    if work_dir is not None:  # checkpoints are read back on --resume: never write over them
        check_collisions(out, [("--work-dir", work_dir)])
    if args.save_model:
        check_collisions(Path(args.save_model), [("-o", out)], "--save-model")
    check_outputs(outputs, reads, overwrite=args.overwrite)
    if args.save_model and not args.overwrite:
        d = Path(args.save_model)
        saved = [*d.glob("config.json"), *d.glob("weights.pt"), *d.glob("channel_*/config.json")]
        if saved:
            raise OutputError(f"--save-model {args.save_model} already holds a model ({saved[0].name}); add "
                              "--overwrite to replace it, or choose another folder")
    check_existing_work(args, work_dir, default_wd)

    progress = TqdmProgress()
    if blockwise:
        return _run_blockwise(args, vol, method, out, work_dir, default_wd, progress)
    with guarded_run(args, work_dir, progress) as stop:
        res = restore(vol, method, model_dir=args.model, save_model=args.save_model,
                      trust_torchscript=args.trust_torchscript, residual_map=bool(args.residual_map),
                      **restorer_options(args, work_dir, progress, stop.should_stop))
        if stop.signum is not None:
            raise Cancelled("stopped before writing the output")
    try:
        from ..data.io.convert import restoration_conversion  # the rule block-wise runs use too

        conv = None if args.dtype == "float32" else restoration_conversion(vol, args.dtype, seed=args.seed)
        path = write_volume(res.volume, out, dtype=args.dtype, inputs=[p for _, p in reads if p],
                            overwrite=args.overwrite, conversion=conv)
        if args.residual_map:
            write_residual_map(args, res, vol)
        if getattr(args, "also_rl", None):
            write_rl_beside(args, vol, res, path, restorer_options(args, None, progress, lambda: False))
    except IsoappError as exc:
        raise with_resume_hint(exc, args, work_dir) from exc
    if default_wd and work_dir is not None and work_dir.is_dir():
        remove_checkpoints(work_dir)
    detail = (f"train {res.train_seconds:.1f} s, restore {res.restore_seconds:.1f} s, "
              f"{res.info['parameters']} parameters")
    return report(args, path, res.volume.shape, res.volume.voxel_size, res.train_seconds, res.restore_seconds,
                  res.peak_rss_bytes, res.info, detail)


def restorer_options(args: argparse.Namespace, work_dir: Path | None, progress, should_stop) -> dict:
    """The Restorer's options from the command line (shared by the in-memory and the block-wise run)."""
    train = {"checkpoint_seconds": args.checkpoint_seconds} if args.checkpoint_seconds is not None else None
    return dict(preset=args.preset, factor=args.factor, voxel_size=args.voxel_size, psf=psf_spec(args),
                steps=args.steps, device=args.device, seed=args.seed, params=parse_params(args.param), train=train,
                work_dir=work_dir, resume=args.resume, emit=progress, should_stop=should_stop,
                **({"check": args.check} if getattr(args, "check", None) else {}))


def report(args: argparse.Namespace, path, shape, voxel_size, train_s: float, restore_s: float, peak_rss: int,
           info: dict, detail: str, **extra) -> int:
    """Print the run's summary: ``--json``, or the quality lines and one "wrote" line ending in ``detail``."""
    summary = {"output": str(path), "shape": list(shape), "voxel_size": list(voxel_size),
               "train_seconds": round(train_s, 2), "restore_seconds": round(restore_s, 2), **extra,
               "peak_rss_mb": round(peak_rss / 2**20, 1), **info}
    if args.json:
        print(json.dumps(summary, default=float))
        return 0
    for line in quality_lines(info):
        print(line)
    dz, dy, dx = voxel_size
    print(f"wrote {path}: {tuple(shape)} {args.dtype}, voxel {dz:.4g} x {dy:.4g} x {dx:.4g} µm "
          f"({info['method']}, factor {info['factor']:.3g}, {detail})")
    return 0


def _run_blockwise(args, vol, method, out, work_dir, default_wd, progress) -> int:
    """Train on a bounded region (or load --model), then restore block by block into the output."""
    if args.block_size:  # before any training: a block size that cannot fit in memory
        from ..run.blockwise import check_block_memory
        from ..run.resolve import sizing_factor
        from ..training.tiling import BlockGeometry

        check_block_memory(tuple(args.block_size), sizing_factor(vol, args.factor, args.voxel_size),
                           BlockGeometry(16, 64, 8), args.workers or 1)
    if args.overwrite and not args.resume and (work_dir / "blocks").is_dir():  # start afresh
        import shutil

        shutil.rmtree(work_dir / "blocks")
    from ..run.restore import restore_to_file

    with guarded_run(args, work_dir, progress) as stop:
        res = restore_to_file(vol, out, method, dtype=args.dtype, model_dir=args.model, save_model=args.save_model,
                              trust_torchscript=args.trust_torchscript,
                              block=tuple(args.block_size) if args.block_size else None, workers=args.workers,
                              scheduler=args.scheduler,
                              train_budget_bytes=int(args.train_budget_mb * 2**20) if args.train_budget_mb else None,
                              **restorer_options(args, work_dir, progress, stop.should_stop))
    if default_wd and work_dir.is_dir():
        remove_checkpoints(work_dir)
    run = res.run
    rate = round(run.voxels / run.seconds, 1) if run.seconds > 0 and run.computed else None
    detail = (f"{run.total} blocks: {run.computed} restored, {run.skipped} done before; restore {run.seconds:.1f} s"
              + (f", {rate / 1e6:.2f} Mvoxel/s" if rate else ""))
    return report(args, res.path, res.shape, res.voxel_size, res.train_seconds, run.seconds, res.peak_rss_bytes,
                  res.info, detail, voxels_per_s=rate)
