"""GPU benchmark: training throughput at the quality preset, and the time to restore a 700³ volume.

Usage::

    python benchmarks/gpu.py --device cuda --out /tmp/gpu_bench          # the full run (GPU, < 8 min)
    OMP_NUM_THREADS=1 python benchmarks/gpu.py --small --out /tmp/gpu_bench_cpu   # CPU smoke size (~3 min)

What it measures (every figure also goes to ``<out>/gpu_bench.json``):

1. **Training throughput** of IsoNet and Self-Vision at the ``quality`` preset: ``--warmup`` steps
   (CUDA context, cuDNN autotuning) and then ``--steps`` timed steps of each method's real training
   loop (pair synthesis, host-to-device copy, forward, backward, optimiser) on a tubes phantom.
   Reported as steps/s and samples/s (steps/s x batch size), with the autocast dtype (bfloat16, or
   float16 with a GradScaler) and peak RSS / peak CUDA memory.
2. **Restoring a 700³ volume** with the IsoNet model trained in (1), saved to ``<out>/isonet_model``
   and loaded by ``isoapp.run.restore.restore(..., model_dir=...)``: an input of
   ``ceil((size - 1) / F) + 1`` planes of ``size x size`` pixels (176 x 700 x 700 at F=4: 701 x 700 x 700
   output voxels). The stack tiles the phantom's degraded planes, so it has real structure and noise.
   A restore of 16 rows of that stack runs first, so that one-off CUDA initialisation and cuDNN
   autotuning are not counted. Reported: the
   wall time of the ``restore()`` call, its prediction time, output voxels/s, peak RSS and peak
   CUDA memory of that call (:mod:`isoapp.core.memory`).

``--small`` shrinks everything so that it runs on a CPU in a few minutes (``--size 64``, 2 timed steps,
batch and patch cut down); its figures check that the script works, they are not GPU figures.
Throughput does not depend on how well the model is trained, so few steps suffice. ``--precision
fp16`` forces the float16 + GradScaler path on a GPU that has bfloat16 (to measure or check it);
``fp32`` turns autocast off.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isoapp.core import memory
from isoapp.core.volume import Volume
from isoapp.data.normalize import Normalizer
from isoapp.methods.base import build_config, get_method
from isoapp.physics.degradation import estimate_degradation
from isoapp.quality.phantoms import make_phantom
from isoapp.run.restore import restore
from isoapp.training import device as devmod
from isoapp.training.context import RunContext
from isoapp.training.events import ProgressEvent

log = logging.getLogger("bench_gpu")

FACTOR = 4.0
DXY_UM = 0.1
# --small: the quality networks, but batches and patches a 1-thread CPU gets through in seconds
SMALL_TRAIN = {"isonet": {"batch_size": 4, "patch_size": 64}, "selfvision": {"batch_size": 2, "patch_size": 32}}


class PhaseMemory:
    """Peak RSS and peak CUDA memory of one phase (reset at entry where the OS allows it)."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.figures: dict[str, Any] = {}

    def __enter__(self) -> PhaseMemory:
        self.rss_reset = memory.reset_peak_rss()
        self.rss_start = memory.current_rss_bytes()
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
        return self

    def __exit__(self, *exc) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        self.figures = {
            "peak_rss_gib": memory.gib(memory.peak_rss_bytes()),
            "peak_rss_is_phase_peak": self.rss_reset,  # False: the process's lifetime peak
            "rss_at_start_gib": memory.gib(self.rss_start),
            "peak_cuda_allocated_gib": memory.gib(memory.peak_cuda_bytes(self.dev)),
            "peak_cuda_reserved_gib": memory.gib(memory.peak_cuda_bytes(self.dev, reserved=True)),
        }


def training_phantom(size_xy: int, nz_gt: int) -> Volume:
    ph = make_phantom("tubes", (nz_gt, size_xy, size_xy), factor=FACTOR, seed=0, noise=True, voxel_um=DXY_UM)
    return ph.degraded


def make_method(name: str, xn: np.ndarray, steps: int, train: dict[str, Any], seed: int = 0):
    """The method at the quality preset with the stack's estimated degradation, as ``restore`` builds it."""
    deg = estimate_degradation(xn, FACTOR, lateral_um=DXY_UM, name="phantom")
    cls = get_method(name)
    cfg = build_config(name, preset="quality", factor=FACTOR, voxel_size=(FACTOR * DXY_UM, DXY_UM, DXY_UM),
                       steps=steps, train={**train, "checkpoint_every": 10**6, "checkpoint_seconds": 0,
                                           "preview_every": 0, "val_every": 10**6},
                       seed=seed, input_name="phantom", input_shape=tuple(xn.shape), degradation=deg.model_dump())
    return cls(cfg, psf=deg.psf() if cls.uses_psf else None, degradation=deg)


def bench_training(name: str, xn: np.ndarray, args, dev: torch.device, amp: bool) -> tuple[dict, Any]:
    """Train ``warmup + steps`` steps; time the last ``steps`` from the loop's progress events."""
    train = dict(SMALL_TRAIN[name]) if args.small else {}
    if args.batch_size:
        train["batch_size"] = args.batch_size
    total = args.warmup + args.steps
    m = make_method(name, xn, total, train)
    stamps: dict[int, float] = {}
    losses: dict[int, float | None] = {}

    def emit(ev) -> None:
        if isinstance(ev, ProgressEvent) and ev.stage == name:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)  # the step's kernels have finished
            stamps[ev.step] = time.perf_counter()
            losses[ev.step] = ev.loss

    ctx = RunContext(device=dev, amp=amp, seed=0, emit=emit)
    with PhaseMemory(dev) as mem:
        t0 = time.perf_counter()
        m.fit(xn, ctx)
        m.fitted = True
        wall = time.perf_counter() - t0
    timed = stamps[total] - stamps[args.warmup] if args.warmup else stamps[total] - t0
    cfg = m.config.train
    sps = args.steps / timed
    row = {"method": name, "preset": "quality", "batch_size": cfg.batch_size, "patch_size": cfg.patch_size,
           "train_overrides": train, "parameters": m.parameter_count(), "warmup_steps": args.warmup,
           "timed_steps": args.steps, "timed_s": round(timed, 3), "steps_per_s": round(sps, 3),
           "samples_per_s": round(sps * cfg.batch_size, 2), "s_per_step": round(timed / args.steps, 4),
           "fit_wall_s": round(wall, 2), "amp_dtype": str(ctx.amp_dtype).replace("torch.", "") if ctx.amp_dtype else
           "float32", "grad_scaler": devmod.needs_grad_scaler(dev, ctx.use_amp), "first_loss": losses.get(1),
           "final_loss": losses.get(total),
           "losses_finite": all(v is not None and math.isfinite(v) for v in losses.values()), **mem.figures}
    return row, m


def big_stack(src: np.ndarray, size: int) -> Volume:
    """``ceil((size-1)/F)+1`` planes of ``size x size``, tiled from ``src`` (real structure and noise)."""
    nz = math.ceil((size - 1) / FACTOR) + 1
    reps = [math.ceil(n / s) for n, s in zip((nz, size, size), src.shape, strict=True)]
    data = np.tile(src, reps)[:nz, :size, :size]
    return Volume(np.ascontiguousarray(data, np.float32), axes="ZYX", voxel_size=(FACTOR * DXY_UM, DXY_UM, DXY_UM),
                  name=f"tiled_{nz}x{size}x{size}")


def bench_restore(model_dir: Path, src: np.ndarray, args, dev: torch.device) -> dict:
    vol = big_stack(src, args.size)
    # warm-up: 16 rows of the same stack give xz planes of the timed run's shape (CUDA context,
    # cuDNN autotuning for that shape), at a fraction of the cost
    warm = vol.with_data(np.ascontiguousarray(vol.data[:, :16, :]))
    t0 = time.perf_counter()
    restore(warm, model_dir=model_dir, device=str(dev))
    warm_s = time.perf_counter() - t0
    with PhaseMemory(dev) as mem:
        t0 = time.perf_counter()
        r = restore(vol, model_dir=model_dir, device=str(dev))
        wall = time.perf_counter() - t0
    out_vox = int(np.prod(r.volume.shape))
    return {"input_shape": list(vol.shape), "output_shape": list(r.volume.shape), "output_voxels": out_vox,
            "input_gib": memory.gib(vol.data.nbytes), "output_gib": memory.gib(r.volume.data.nbytes),
            "warmup_restore_s": round(warm_s, 2), "restore_call_s": round(wall, 2),
            "predict_s": round(r.restore_seconds, 2), "output_voxels_per_s": round(out_vox / wall),
            "target_s": 10.0 if args.size >= 700 else None, **mem.figures}


def machine(dev: torch.device) -> dict:
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "ram_gib": memory.gib(memory.total_bytes()),
            "device": devmod.describe_device(dev)}
    if dev.type == "cuda":
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    capability=".".join(map(str, torch.cuda.get_device_capability(dev))))
    return info


def table(result: dict) -> str:
    lines = [f"device: {result['machine']['device']}, torch {result['machine']['torch']}, "
             f"precision {result['precision']}"]
    lines.append("")
    lines.append("training (quality preset)  | batch | patch | amp      | steps/s | samples/s | final loss | "
                 "peak RSS GiB | peak CUDA GiB")
    for r in result["training"]:
        loss = f"{r['final_loss']:.4g}" if r["final_loss"] is not None else "-"
        cuda = r["peak_cuda_allocated_gib"] if r["peak_cuda_allocated_gib"] is not None else "-"
        lines.append(f"{r['method']:<26} | {r['batch_size']:>5} | {r['patch_size']:>5} | {r['amp_dtype']:<8} | "
                     f"{r['steps_per_s']:>7.3f} | {r['samples_per_s']:>9.2f} | {loss:>10} | "
                     f"{r['peak_rss_gib']:>12.2f} | {cuda:>13}")
    rs = result.get("restore")
    if rs:
        lines.append("")
        lines.append(f"restore {rs['input_shape']} -> {rs['output_shape']} ({rs['output_voxels'] / 1e6:.2f} M voxels) "
                     f"with the IsoNet model: {rs['restore_call_s']:.2f} s (predict {rs['predict_s']:.2f} s, "
                     f"{rs['output_voxels_per_s'] / 1e6:.3f} M voxels/s), peak RSS {rs['peak_rss_gib']:.2f} GiB, "
                     f"peak CUDA {rs['peak_cuda_allocated_gib'] if rs['peak_cuda_allocated_gib'] is not None else '-'} GiB"
                     + (f"; target <= {rs['target_s']:.0f} s" if rs["target_s"] else ""))
    lines.append(f"total {result['total_s']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_bench.json and the trained model")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per method (default 100; --small 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 10; --small 1)")
    ap.add_argument("--size", type=int, default=None, help="edge of the restored volume (default 700; --small 64)")
    ap.add_argument("--small", action="store_true", help="CPU smoke size: a few minutes on one core")
    ap.add_argument("--methods", default="isonet,selfvision", help="methods whose training is timed")
    ap.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    ap.add_argument("--precision", choices=("auto", "fp16", "fp32"), default="auto",
                    help="auto: bfloat16 where the GPU has it, else float16 + GradScaler; fp16 forces the latter")
    ap.add_argument("--skip-restore", action="store_true")
    args = ap.parse_args(argv)
    args.steps = args.steps or (2 if args.small else 100)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.small else 10)
    args.size = args.size or (64 if args.small else 700)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    dev = devmod.resolve_device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    bf16 = devmod.bf16_supported
    if args.precision == "fp16":
        devmod.bf16_supported = lambda device: False  # the float16 + GradScaler path on any GPU
    amp = args.precision != "fp32"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    # a stack big enough for the quality preset's patches (IsoNet 128 px, Self-Vision 64³ crops)
    xy = 96 if args.small else 192
    phantom = training_phantom(xy, 4 * (16 if args.small else 32) + 1)
    norm = Normalizer.fit(phantom.data)
    xn = norm.before(np.asarray(phantom.data, np.float32))
    result: dict[str, Any] = {"machine": machine(dev), "precision": args.precision, "small": args.small,
                              "phantom_input_shape": list(phantom.shape), "factor": FACTOR, "training": []}
    isonet = None
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        print(f"training {name} ({args.warmup} + {args.steps} steps) ...", flush=True)
        row, m = bench_training(name, xn, args, dev, amp)
        result["training"].append(row)
        if name == "isonet":
            isonet = m
    if dev.type == "cuda" and args.precision == "auto" and devmod.amp_dtype(dev) == torch.bfloat16:
        # a bfloat16 GPU never runs the float16 + GradScaler path: check it once, briefly
        print("training isonet with float16 + GradScaler (check) ...", flush=True)
        devmod.bf16_supported = lambda device: False
        try:
            short = argparse.Namespace(**{**vars(args), "steps": min(args.steps, 20), "warmup": min(args.warmup, 5)})
            row, _ = bench_training("isonet", xn, short, dev, amp)
        finally:
            devmod.bf16_supported = bf16
        result["training"].append({**row, "method": "isonet (fp16 check)"})
    if not args.skip_restore:
        if isonet is None:
            _, isonet = bench_training("isonet", xn, argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 0}),
                                       dev, amp)
        model_dir = isonet.save(out / "isonet_model")
        print(f"restoring a {args.size}^3 output with the IsoNet model ...", flush=True)
        result["restore"] = bench_restore(model_dir, phantom.data, args, dev)
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    (out / "gpu_bench.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"wrote {out / 'gpu_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
