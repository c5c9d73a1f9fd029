"""Issue 16: survive signals. Real processes, real SIGINT/SIGTERM/SIGKILL via ``os.kill``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from isoapp.training.config import TrainConfig
from isoapp.training.context import RunContext
from isoapp.training.trainer import train_loop

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


def _stack(path: Path) -> Path:
    data = np.random.default_rng(0).random((9, 48, 48), dtype=np.float32)
    tifffile.imwrite(path, data, imagej=True, resolution=(5, 5),
                     metadata={"spacing": 0.8, "unit": "micron", "axes": "ZYX"})
    return path


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".isoapp-tmp-*"))


def test_train_loop_checkpoints_by_elapsed_time(tmp_path):
    """checkpoint_every is far away; checkpoint_seconds alone must write one mid-run."""
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    seen = []

    def step(i: int) -> dict:
        time.sleep(0.03)
        seen.append((tmp_path / "s.ckpt").is_file())
        return {"loss": float(i)}

    cfg = TrainConfig(steps=12, checkpoint_every=10_000, checkpoint_seconds=0.1, val_every=1000, preview_every=0)
    train_loop(RunContext(device="cpu", work_dir=tmp_path), stage="s", steps=12, step_fn=step,
               state={"net": net, "opt": opt}, cfg=cfg)
    assert any(seen), "no checkpoint was written before the end"
    assert TrainConfig().checkpoint_seconds == 30


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_training_saves_a_checkpoint_and_says_how_to_resume(tmp_path, sig):
    src = _stack(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    ckpt = tmp_path / "out.tif.isoapp-checkpoints" / "isonet.ckpt"
    cmd = [sys.executable, "-m", "isoapp", "restore", str(src), "-o", str(out), "--method", "isonet",
           "--steps", "100000", "--checkpoint-seconds", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    for line in proc.stderr:  # wait until training runs; its first checkpoint (step 100) is seconds away
        if "training 100000 steps" in line:
            break
    time.sleep(0.3)
    assert not ckpt.exists()
    os.kill(proc.pid, sig)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + sig
    last = err.strip().splitlines()[-1]
    assert "checkpoint saved in" in last and "--resume" in last and "Traceback" not in err
    assert ckpt.is_file() and not out.exists() and _temps(tmp_path) == []
    if sig == signal.SIGTERM:
        return
    # the same command without --resume refuses to start over on top of the checkpoint ...
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert res.returncode == 2 and "--resume" in res.stderr
    # ... and with --resume it continues from the saved step (a shorter run finishes at once)
    res = subprocess.run(cmd[:-4] + ["--steps", "1", "--resume"], capture_output=True, text=True, env=ENV,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming isonet from step" in res.stderr and out.is_file()
    assert not ckpt.parent.exists()  # the default checkpoint folder goes once the output is written


_SLOW_WRITE = textwrap.dedent("""
    import sys, time
    import isoapp.data.io.tiff as tiff
    from isoapp.cli import main

    def slow(tmp, *a, **k):
        tmp.write_bytes(b"partial output")
        print("writing", flush=True)
        time.sleep(120)

    tiff.write = slow
    sys.exit(main(sys.argv[1:]))
""")


def test_signals_during_the_write_leave_no_temp_file(tmp_path):
    src = _stack(tmp_path / "in.tif")
    for sig in (signal.SIGTERM,):  # SIGINT already raised KeyboardInterrupt; SIGTERM killed the process
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, "restore", str(src), "-o",
                                 str(tmp_path / "out.tif"), "--method", "linear", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        assert proc.stdout.readline().strip() == "writing"
        assert len(_temps(tmp_path)) == 1
        os.kill(proc.pid, sig)
        proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig
        assert _temps(tmp_path) == [] and not (tmp_path / "out.tif").exists()

    # SIGKILL cannot be handled: the partial file stays until the next run in that folder removes it
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, "restore", str(src), "-o",
                             str(tmp_path / "out.tif"), "--method", "linear", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert len(_temps(tmp_path)) == 1
    from isoapp.cli import main

    assert main(["restore", str(src), "-o", str(tmp_path / "other.tif"), "--method", "linear", "-q"]) == 0
    assert _temps(tmp_path) == []
