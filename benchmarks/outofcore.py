"""Benchmark block-wise restoration of a large stack: throughput, peak memory, stop and resume.

Runs ``isoapp restore IN -o OUT.zarr --model MODEL --dtype uint16`` under ``/usr/bin/time -v``
for ``--seconds``, stops it with SIGINT (the graceful stop: finished blocks stay recorded), then
runs it again with ``--resume`` for ``--resume-seconds`` and checks that the finished blocks were
skipped. Memory: the peak RSS ``/usr/bin/time`` reports for the isoapp process and the peak of the
whole process tree (Dask workers included) sampled every 0.2 s. Throughput: the last
``blocks: ... voxels/s`` line isoapp logs (every 30 s). Writes ``OUT_DIR/outofcore.json``.

    python benchmarks/large_stack.py /data/big.tif
    python -m isoapp train /data/big.tif --save-model /data/model
    python benchmarks/outofcore.py /data/big.tif --model /data/model --out-dir /data/bench --seconds 600
    python benchmarks/outofcore.py /data/big.tif --model /data/model --out-dir /data/bench2 --workers 2
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

RATE = re.compile(r"blocks: ([\d.]+)% of ([\d.e+]+) voxels, ([\d.e+]+) voxels/s over (\d+) s")


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_for(cmd: list[str], seconds: float, log_path: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time -v, SIGINT the isoapp process after ``seconds``; figures."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=log, text=True)
        tp = psutil.Process(proc.pid)
        peak = {"tree": 0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak["tree"] = max(peak["tree"], _tree_rss(tp))
                except psutil.Error:
                    pass
                time.sleep(0.2)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t0 = time.time()
        stopped = False
        while proc.poll() is None:
            if time.time() - t0 > seconds and not stopped:
                for child in tp.children():
                    child.send_signal(signal.SIGINT)
                stopped = True
            time.sleep(0.5)
        wall = time.time() - t0
        stop.set()
        th.join()
        stdout = proc.stdout.read()
    text = log_path.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    rates = RATE.findall(text)
    resumed = re.search(r"resuming: (\d+) of (\d+) blocks are done", text)
    out = {"command": " ".join(cmd), "returncode": proc.returncode, "wall_s": round(wall, 1), "stopped": stopped,
           "peak_rss_mb_time_v": round(int(rss.group(1)) / 1024, 1) if rss else None,
           "peak_tree_rss_mb": round(peak["tree"] / 2**20, 1), "stdout": stdout.strip()[-2000:]}
    if rates:
        pct, total, rate, elapsed = rates[-1]
        out.update(percent_done=float(pct), total_voxels=float(total), voxels_per_s=float(rate),
                   block_seconds=int(elapsed))
    if resumed:
        out.update(resumed_done=int(resumed.group(1)), n_blocks=int(resumed.group(2)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--resume-seconds", type=float, default=0)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--block-size", type=int, nargs=3)
    args = ap.parse_args()
    d = Path(args.out_dir)
    d.mkdir(parents=True, exist_ok=True)
    out, wd = d / "out.zarr", d / "work"
    shutil.rmtree(wd, ignore_errors=True)
    cmd = [sys.executable, "-m", "isoapp", "restore", args.input, "-o", str(out), "--model", args.model,
           "--dtype", "uint16", "--work-dir", str(wd), "--overwrite"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.block_size:
        cmd += ["--block-size", *map(str, args.block_size)]
    res = {"first": run_for(cmd, args.seconds, d / "first.log")}
    done = wd / "blocks" / "done.txt"
    res["first"]["blocks_done"] = len(done.read_text().split()) if done.is_file() else 0
    if args.resume_seconds:
        res["resume"] = run_for([c for c in cmd if c != "--overwrite"] + ["--resume"], args.resume_seconds,
                                d / "resume.log")
        res["resume"]["blocks_done"] = len(done.read_text().split()) if done.is_file() else 0
    (d / "outofcore.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
