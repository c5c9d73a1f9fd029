"""Time and memory estimates before and during a run (no Qt here).

Before a run: the method's :class:`~isoapp.methods.base.TimeModel` (its fast preset, measured on a
reference CPU) scaled by the work of the chosen configuration, or this machine's measured speed
from an earlier run of the same method, preset and device. During a run, :class:`RunClock`
replaces the prior by the measured seconds per training step of this very run, and its
whole-run ETA covers every stage still to come (all training stages, channels and the restore).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..physics.forward import output_length
from ..training.config import RunConfig


@dataclass
class Estimate:
    train_s: float
    restore_s: float
    ram_bytes: int
    gpu_bytes: int
    measured: bool = False
    train_loops: int = 0  # training-loop iterations of the whole run (all stages and channels)
    blockwise: bool = False  # restored block by block into a file: memory is bounded, not the stack's
    #: (loops, seconds) of each training part in run order (auto: one per candidate, whose seconds per
    #: loop differ 1.5x); empty: one part of ``train_loops`` in ``train_s``
    parts: list[tuple[int, float]] = field(default_factory=list)

    def train_seconds_of(self, loops: float) -> float:
        """Predicted seconds of the run's first ``loops`` training loops (part by part)."""
        parts = self.parts or [(self.train_loops, self.train_s)]
        done, left = 0.0, max(float(loops), 0.0)
        for n, secs in parts:
            take = min(left, n)
            done += secs * take / max(n, 1)
            left -= take
        if left > 0 and parts:  # more loops than estimated: at the last part's speed
            n, secs = parts[-1]
            done += secs * left / max(n, 1)
        return done

    @property
    def total_s(self) -> float:
        return self.train_s + self.restore_s

    def text(self) -> str:
        src = "from your last run" if self.measured else "from the method's time model"
        mem = ("RAM bounded (block by block into a file)" if self.blockwise
               else f"RAM ~{fmt_bytes(self.ram_bytes)}")
        if self.gpu_bytes:
            mem += f", GPU ~{fmt_bytes(self.gpu_bytes)}"
        train = f"train {fmt_s(self.train_s)}, " if self.train_loops else ""
        return f"Estimate ({src}): {train}restore {fmt_s(self.restore_s)}; {mem}"


def fmt_s(s: float) -> str:
    if s < 1:
        return "< 1 s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def timing_key(method: str, preset: str, device: str) -> str:
    return f"{method}-{preset}-{'cuda' if device.startswith('cuda') else 'cpu'}"


def work_scale(cfg: RunConfig, cls) -> tuple[float, float]:
    """(training, restore) cost of ``cfg`` relative to the method's fast preset."""
    fast = cls.presets.get("fast")
    ftrain, fparams = (fast.train, fast.params) if fast is not None else ({}, {})
    tm = cls.time_model
    width = 1.0
    if tm.width_param:
        default = cls.Params.model_fields[tm.width_param].default if tm.width_param in cls.Params.model_fields else 1
        w = float(cfg.params.get(tm.width_param, default) or 1)
        w0 = float(fparams.get(tm.width_param, default) or 1)
        width = (w / w0) ** 2
    d = 3 if cls.dims == 3 else 2
    area = cfg.train.batch_size * cfg.train.patch_size ** d
    area0 = ftrain.get("batch_size", cfg.train.batch_size) * ftrain.get("patch_size", cfg.train.patch_size) ** d
    return area / max(area0, 1) * width, width


#: the self-checks a run makes (the GUI runs the Restorer's default, both): the axial one trains the
#: method a second time, with the same steps, on every other plane (isoapp.run.restorer.CHECKS)
AXIAL_CHECKS = ("axial", "both")


def training_loops(cls, steps: int, channels: int = 1, axial: bool = True) -> int:
    """Training-loop iterations of a run of ``steps``: one model per channel, and with the axial
    check (channel 0 only) the same steps once more. The estimate predicts these loops and the
    learnt speed divides a run's measured training time by them, so both count alike."""
    if not cls.trainable:
        return 0
    per_run = int(round(steps * cls.time_model.loops_per_step))
    return per_run * (channels + (1 if axial else 0))


def estimate(cfg: RunConfig, shape: tuple[int, ...], *, cls, device: str, measured: dict | None = None,
             check: str = "both") -> Estimate:
    """Estimate a run of ``cfg`` (method class ``cls``) on a stack of ``shape`` on ``device``.

    With the axial check (``check`` axial or both) a trainable method trains twice: the second run
    has the same steps on half the planes, and its steps cost what the first run's cost.
    """
    nz, ny, nx = shape[-3:]
    n_vol = 1
    for s in shape[:-3]:
        n_vol *= int(s)
    out_vox = output_length(nz, cfg.factor) * ny * nx * n_vol
    tm = cls.time_model
    speed = 1.0 / tm.gpu_speedup if device.startswith("cuda") else 1.0
    train_scale, restore_scale = work_scale(cfg, cls)
    n_train = int(shape[-4]) if len(shape) >= 4 else 1  # one model per channel; time points reuse it
    loops = training_loops(cls, cfg.train.steps, n_train, check in AXIAL_CHECKS)
    train_s = loops * tm.s_per_step * train_scale * speed
    restore_s = out_vox * tm.s_per_voxel * restore_scale * speed
    is_measured = False
    if measured:
        if measured.get("s_per_loop") and cls.trainable:
            train_s = loops * float(measured["s_per_loop"])
            is_measured = True
        if measured.get("s_per_voxel"):
            restore_s = out_vox * float(measured["s_per_voxel"])
            is_measured = True
    ram = nz * ny * nx * n_vol * 4 + out_vox * 4 * 4  # input + upsampled, output, two orientations
    nf = int(cfg.params.get(tm.width_param or "n_filters", 32) or 32)
    d = 3 if cls.dims == 3 else 2
    act = cfg.train.batch_size * cfg.train.patch_size ** d * nf * 4 * 12 if cls.trainable else 0
    gpu = act + 64 * 2**20 if device.startswith("cuda") else 0
    if not device.startswith("cuda"):
        ram += act
    return Estimate(train_s, restore_s, int(ram), int(gpu), is_measured, loops)


def estimate_auto(cfg: RunConfig, shape: tuple[int, ...], *, device: str, timings: dict,
                  check: str = "both") -> Estimate:
    """``auto``'s estimate: its candidates' own estimates added up (each from this machine's measured
    speed of that method, preset and device when known), as auto trains them one after the other
    with its training settings; the restore as the slowest candidate's. Its training loops are the
    candidates' loops (Self-Net counts two per step), so the run's ETA follows the real steps."""
    from ..methods import get_method
    from ..methods.base import build_config

    parts = []
    for name in cfg.params.get("candidates") or ("isonet", "selfnet"):
        cls = get_method(name)
        c = build_config(name, preset=cfg.preset, factor=cfg.factor, voxel_size=cfg.voxel_size,
                         train=cfg.train_overrides)
        parts.append(estimate(c, shape, cls=cls, device=device, check=check,
                              measured=timings.get(timing_key(name, cfg.preset, device))))
    return Estimate(sum(e.train_s for e in parts), max(e.restore_s for e in parts),
                    max(e.ram_bytes for e in parts), max(e.gpu_bytes for e in parts),
                    any(e.measured for e in parts), sum(e.train_loops for e in parts),
                    parts=[(e.train_loops, e.train_s) for e in parts if e.train_loops])


def is_training_step(ev) -> bool:
    """Whether a :class:`~isoapp.training.events.ProgressEvent` is one training-loop iteration: a step
    with a loss, or a step of the axial check's training (relayed without its loss, flagged in ``extra``).
    The estimate counts the check's loops, so the clock must too: without them the ETA stood still
    through the checks, 45 % of an auto run on nuclei_aniso_4um."""
    return ev.stage != "restore" and (ev.loss is not None or bool(ev.extra.get("training")))


@dataclass
class RunClock:
    """The whole-run ETA of a running job, refined from its own measured speed.

    Feed it every :class:`~isoapp.training.events.ProgressEvent` (:meth:`update`). Training events
    (any stage but ``restore``) count loop iterations; once a few are timed, the remaining training
    is (loops left) x (measured seconds per loop), and the restore estimate is scaled by the same
    ratio of measured to predicted speed. In the restore stage the restore's own progress is used.
    """

    estimate: Estimate
    start: float = field(default_factory=time.perf_counter)
    loops_done: int = 0
    first_loop_t: float | None = None
    restore_frac: float = 0.0
    restore_start: float | None = None
    _last_step: dict = field(default_factory=dict)

    def update(self, stage: str, step: int, total: int, training: bool, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        if training:
            prev = self._last_step.get(stage)
            new = step - prev if prev is not None and step > prev else 1
            self._last_step[stage] = step
            if self.first_loop_t is None:
                self.first_loop_t = now
                self._first_count = self.loops_done + new
            self.loops_done += new
            self._t_last_loop = now
        elif stage == "restore":
            if self.restore_start is None:  # it began when training ended (its first event is a step in)
                self.restore_start = getattr(self, "_t_last_loop", now) if step > 0 else now
            self.restore_frac = min(max(step / max(total, 1), 0.0), 1.0)

    def speed_ratio(self) -> float:
        """Measured / predicted seconds of the training loops timed so far (1 until measured). The
        prediction is part by part: IsoNet's loops cost 0.1 s, Self-Net's 0.115 s, so a ratio against
        their average read an auto run 1.4x too fast while IsoNet trained."""
        est = self.estimate
        if not est.train_loops or est.train_s <= 0 or self.first_loop_t is None:
            return 1.0
        if self.loops_done - self._first_count < 2:
            return 1.0
        predicted = est.train_seconds_of(self.loops_done) - est.train_seconds_of(self._first_count)
        return (self._t_last_loop - self.first_loop_t) / max(predicted, 1e-9)

    def remaining(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        est = self.estimate
        ratio = self.speed_ratio()
        if self.restore_start is not None:
            if self.restore_frac > 0.05:
                spent = now - self.restore_start
                return spent * (1 - self.restore_frac) / self.restore_frac
            return est.restore_s * ratio
        left = max(est.train_s - est.train_seconds_of(self.loops_done), 0.0) if est.train_loops else 0.0
        return left * ratio + est.restore_s * ratio

    def eta(self, now: float | None = None) -> float:
        """:meth:`remaining`; once this run's speed is measured, never above the last ETA less the
        time since: a countdown that does not jump back up while the measured speed settles. (Before
        that the prior may be far off, e.g. on a busy machine: the first measurement replaces it.)"""
        now = time.perf_counter() if now is None else now
        left = self.remaining(now)
        measured = self.first_loop_t is not None and self.loops_done - self._first_count >= 2
        if not measured and self.restore_start is None:
            return left
        last = getattr(self, "_eta_last", None)
        if last is not None:
            left = min(left, max(last[0] - (now - last[1]), 0.0))
        self._eta_last = (left, now)
        return left

    def total(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        return (now - self.start) + self.remaining(now)
