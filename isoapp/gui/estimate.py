"""Rough time and memory estimates shown before a run starts (no Qt here).

The heuristic counts convolution work from the run configuration (steps x batch x patch area x
filters^2); it is replaced by the measured speed of an earlier run of the same method, preset and
device when one is known (the window records it after every finished run).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..degrade import output_length
from ..engine.config import RunConfig

# seconds per unit of "work" (pixel x filter^2 x level), from IsoNet fast on a 2-core laptop CPU
CPU_SECONDS_PER_WORK = 1.2e-9
GPU_SPEEDUP = 40.0
THREE_D_METHODS = ("selfvision",)


@dataclass
class Estimate:
    train_s: float
    restore_s: float
    ram_bytes: int
    gpu_bytes: int
    measured: bool = False

    def text(self) -> str:
        src = "from your last run" if self.measured else "rough"
        mem = f"RAM ~{_fmt_bytes(self.ram_bytes)}"
        if self.gpu_bytes:
            mem += f", GPU ~{_fmt_bytes(self.gpu_bytes)}"
        return f"Estimate ({src}): train {_fmt_s(self.train_s)}, restore {_fmt_s(self.restore_s)}; {mem}"


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def timing_key(method: str, preset: str, device: str) -> str:
    return f"{method}-{preset}-{'cuda' if device.startswith('cuda') else 'cpu'}"


def work_units(cfg: RunConfig, trainable: bool) -> tuple[float, float]:
    """(work per training step, work per output voxel)."""
    p = cfg.params
    nf = float(p.get("n_filters", 32))
    depth = float(p.get("depth", 2))
    per_px = nf * nf * (depth + 1) * 9
    patch = cfg.train.patch_size
    area = patch ** 3 if cfg.method in THREE_D_METHODS else patch ** 2
    step = cfg.train.batch_size * area * per_px if trainable else 0.0
    return step, 2 * per_px  # every output voxel is restored in two orientations


def estimate(cfg: RunConfig, shape: tuple[int, ...], *, trainable: bool, device: str,
             measured: dict | None = None) -> Estimate:
    """Estimate a run of ``cfg`` on a stack of ``shape`` (any canonical axes) on ``device``."""
    nz, ny, nx = shape[-3:]
    n_vol = 1
    for s in shape[:-3]:
        n_vol *= int(s)
    nzo = output_length(nz, cfg.factor)
    out_vox = nzo * ny * nx * n_vol
    step_work, vox_work = work_units(cfg, trainable)
    speed = CPU_SECONDS_PER_WORK / (GPU_SPEEDUP if device.startswith("cuda") else 1.0)
    steps = cfg.train.steps if trainable else 0
    train_s = steps * step_work * speed * (n_vol if trainable else 0)
    restore_s = out_vox * vox_work * speed
    is_measured = False
    if measured:
        if measured.get("s_per_step") and trainable:
            train_s = steps * float(measured["s_per_step"]) * n_vol
            is_measured = True
        if measured.get("s_per_voxel"):
            restore_s = out_vox * float(measured["s_per_voxel"])
            is_measured = True
    ram = nz * ny * nx * n_vol * 4 + out_vox * 4 * 4  # input + upsampled, output, two orientations
    nf = int(cfg.params.get("n_filters", 32))
    act = cfg.train.batch_size * cfg.train.patch_size ** 2 * nf * 4 * 12
    gpu = act + 64 * 2**20 if device.startswith("cuda") else 0
    if not device.startswith("cuda"):
        ram += act
    return Estimate(train_s, restore_s, int(ram), int(gpu), is_measured)
