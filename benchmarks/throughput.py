"""Restore throughput against the compute bound: output voxels/s, FLOP per voxel and the machine's conv speed.

Usage::

    python benchmarks/throughput.py --out /tmp/tp                       # this checkout only
    python benchmarks/throughput.py --out /tmp/tp --baseline /tmp/old   # side by side with another checkout

What it does (every figure also goes to ``<out>/throughput.json`` and ``<out>/throughput.md``):

1. Writes an anisotropic uint16 stack (``--shape``, default 40 x 512 x 512, F = 4) with
   ``benchmarks/large_stack.py`` (a noisy tubes phantom tiled with mirrors: it tests speed, not quality).
2. Trains IsoNet and Self-Net once each (``--steps``, fast preset, ``--check none``) with this checkout
   and saves the models; speed does not depend on how well a model is trained.
3. Restores the stack block-wise to OME-Zarr (``--dtype uint16``) with every method in a fresh
   ``python -m isoapp restore`` process, once per checkout (this one, and ``--baseline`` if given, run
   with the same model). Per run: wall time, output voxels/s, user and system CPU seconds and peak
   RSS of the process (``os.wait4``), and for the baseline pair the largest difference between the
   two outputs (uint16 units).
4. Counts the FLOP of one output voxel for the plane-wise nets (``torch.utils.flop_counter`` on one
   xz plane of the run's shape, times the two passes), and measures the machine's conv throughput on
   large 3 x 3 float32 convolutions (64 and 128 channels, the same threads; the faster is the bound).
   The ratio of useful FLOP/s (output voxels/s x FLOP per voxel) to that throughput says how close
   restore runs to the compute bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FACTOR = 4.0


def run_wait4(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``cmd``; return its wall time, user/system CPU seconds and peak RSS (``os.wait4``); raise on failure."""
    import threading

    t0 = time.perf_counter()
    # cwd: not a checkout, since ``python -m`` puts the working directory before PYTHONPATH
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)

    bufs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda s=s, k=k: bufs.__setitem__(k, s.read()))
               for s, k in ((p.stdout, "out"), (p.stderr, "err"))]
    for t in readers:
        t.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    for t in readers:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {bufs['err'].decode()[-2000:]}")
    return {"wall_s": round(wall, 2), "user_s": round(ru.ru_utime, 2), "sys_s": round(ru.ru_stime, 2),
            "peak_rss_gb": round(ru.ru_maxrss * 1024 / 1e9, 3), "stdout": bufs["out"].decode()}


def env_for(tree: Path, threads: int | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def flop_per_output_voxel(model_dir: Path, plane_shape: tuple[int, int]) -> float:
    """FLOP (2 per multiply-add) of one output voxel of a plane-wise model: both passes, one plane's average."""
    from torch.utils.flop_counter import FlopCounterMode

    from isoapp.methods.base import load_model

    m = load_model(model_dir)
    net = m.inference_net.eval()
    d = int(getattr(net, "divisor", 1))
    x = torch.zeros((1, 1) + tuple(-(-s // d) * d for s in plane_shape))  # padded as prediction pads
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        net(x)
    return float(fc.get_total_flops()) / float(np.prod(plane_shape))  # FlopCounterMode counts 2 per multiply-add


def conv_throughput(seconds: float = 3.0) -> dict[str, float]:
    """GFLOP/s of large float32 3 x 3 convolutions with this process's threads; the best is the bound.

    Two shapes: 64 to 64 channels on a batch of 8 x 128 x 128, and 128 to 128 channels on 4 x 64 x 64
    (on 2 AVX2 cores the second runs near the FMA peak, the first lower).
    """
    res: dict[str, float] = {"threads": torch.get_num_threads()}
    for cin, b, side in ((64, 8, 128), (128, 4, 64)):
        conv = torch.nn.Conv2d(cin, cin, 3, padding=1).eval()
        x = torch.randn(b, cin, side, side)
        flop = 2.0 * cin * cin * 9 * b * side * side
        with torch.inference_mode():
            for _ in range(2):
                conv(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                conv(x)
                n += 1
            dt = time.perf_counter() - t0
        res[f"gflops_{cin}ch"] = round(flop * n / dt / 1e9, 1)
    res["gflops"] = max(v for k, v in res.items() if k.startswith("gflops_"))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--shape", type=int, nargs=3, default=(40, 512, 512), metavar=("Z", "Y", "X"))
    ap.add_argument("--methods", nargs="+", default=["linear", "isonet", "selfnet"])
    ap.add_argument("--steps", type=int, default=10, help="training steps of each model (speed does not need more)")
    ap.add_argument("--baseline", type=Path, help="another checkout to run side by side (e.g. a git worktree)")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the restore processes (default: torch's)")
    ap.add_argument("--block-size", type=int, nargs=3, metavar=("Z", "Y", "X"),
                    help="pass --block-size to both checkouts (default: each checkout's own choice)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    stack = out / "stack.tif"
    py = sys.executable
    here_env = env_for(REPO, args.threads)
    if not stack.exists():
        subprocess.run([py, str(HERE / "large_stack.py"), str(stack), "--shape", *map(str, args.shape)],
                       env=here_env, check=True, cwd=out)
    models: dict[str, Path] = {}
    for name in args.methods:
        if name in ("linear", "cubic"):
            continue
        mdir = out / f"model_{name}"
        if not (mdir / "config.json").exists():
            subprocess.run([py, "-m", "isoapp", "train", str(stack), "--method", name, "--save-model", str(mdir),
                            "--steps", str(args.steps), "--device", args.device, "--overwrite", "-q"],
                           env=here_env, check=True, cwd=out)
        models[name] = mdir
    trees = [("this", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    nz, ny, nx = args.shape
    out_vox = (int((nz - 1) * FACTOR) + 1) * ny * nx
    rows = []
    for name in args.methods:
        outputs = {}
        for label, tree in trees:
            dst = out / f"{label}_{name}.zarr"
            cmd = [py, "-m", "isoapp", "restore", str(stack), "-o", str(dst), "--dtype", "uint16", "--blockwise",
                   "--device", args.device, "--overwrite", "-q"]
            cmd += ["--model", str(models[name])] if name in models else ["--method", name]
            if args.block_size:
                cmd += ["--block-size", *map(str, args.block_size)]
            r = run_wait4(cmd, env_for(tree, args.threads), out)
            r.pop("stdout")
            r.update(method=name, code=label, output_voxels=out_vox,
                     mvoxel_per_s=round(out_vox / r["wall_s"] / 1e6, 3))
            rows.append(r)
            outputs[label] = dst
            print(json.dumps(r), flush=True)
        if len(outputs) == 2:
            from isoapp.data.io import read_volume

            a = np.asarray(read_volume(outputs["this"]).data, np.int64)
            b = np.asarray(read_volume(outputs["baseline"]).data, np.int64)
            rows[-1]["max_abs_diff_vs_this"] = int(np.abs(a - b).max())
    conv = conv_throughput()
    plane = (int((nz - 1) * FACTOR) + 1, nx)
    for r in rows:
        if r["method"] in models:
            fpv = 2 * flop_per_output_voxel(models[r["method"]], plane)  # xz and yz passes
            r["flop_per_output_voxel"] = round(fpv)
            r["useful_gflops"] = round(r["mvoxel_per_s"] * 1e6 * fpv / 1e9, 2)
            r["ratio_to_conv"] = round(r["useful_gflops"] / conv["gflops"], 3)
    result = {"shape": list(args.shape), "factor": FACTOR, "conv_3x3": conv, "rows": rows,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                          "omp_num_threads": args.threads or os.environ.get("OMP_NUM_THREADS")}}
    (out / "throughput.json").write_text(json.dumps(result, indent=2))
    lines = [f"stack {nz} x {ny} x {nx} uint16, F 4, output {out_vox / 1e6:.1f} Mvoxel; 3×3 float32 convs on "
             f"{conv['threads']} threads: 64→64 {conv['gflops_64ch']} GFLOP/s, 128→128 {conv['gflops_128ch']} GFLOP/s "
             f"(the bound: {conv['gflops']})", "",
             "| method | code | wall s | Mvoxel/s | user s | sys s | peak RSS GB | FLOP/voxel | useful GFLOP/s | "
             "ratio to conv | max diff |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['code']} | {r['wall_s']} | {r['mvoxel_per_s']} | {r['user_s']} | "
                     f"{r['sys_s']} | {r['peak_rss_gb']} | {r.get('flop_per_output_voxel', '-')} | "
                     f"{r.get('useful_gflops', '-')} | {r.get('ratio_to_conv', '-')} | "
                     f"{r.get('max_abs_diff_vs_this', '-')} |")
    (out / "throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
