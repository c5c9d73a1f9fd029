"""Measure the GUI during a real training run: event-loop stalls and the accuracy of the time estimates.

Usage::

    QT_QPA_PLATFORM=offscreen python scripts/gui_responsiveness.py [--method isonet] [--steps 60]

A 10 ms QTimer ticks in the GUI thread while the method trains in the worker thread; the longest
gap between ticks is the longest event-loop stall (target: < 100 ms). It also prints the estimate
shown before the run, the whole-run ETA after 20 % of the training steps (elapsed + remaining),
and the actual duration. Timings on a shared or loaded machine are upper bounds.

Each stall over 100 ms is split, from the GUI thread's own counters, into time on a CPU, time
waiting in the run queue for a CPU (Linux ``/proc/thread-self/schedstat``: other processes on a
shared machine) and the rest (waiting for the GIL or blocked); "longest stall less run-queue wait"
is then an estimate of the stall on a machine with a free core.

``--profile`` finds where the GUI thread stalls: a watchdog thread samples the GUI thread's Python
stack every 5 ms while a tick is more than 40 ms late, and each stall is printed with the frames
(isoapp, pyqtgraph, numpy) it spent its samples in.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np


class StallSampler:
    """Samples the GUI thread's stack from a watchdog thread while the event loop is late."""

    def __init__(self, late_s: float = 0.04, every_s: float = 0.005) -> None:
        self.main = threading.get_ident()
        self.last_tick = time.perf_counter()
        self.late_s, self.every_s = late_s, every_s
        self.samples: dict[float, list[traceback.StackSummary]] = collections.defaultdict(list)
        self.others: dict[float, list[traceback.StackSummary]] = collections.defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)

    def tick(self, t: float) -> None:
        self.last_tick = t

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            since = self.last_tick
            if time.perf_counter() - since > self.late_s:
                frames = sys._current_frames()
                frame = frames.pop(self.main, None)
                frames.pop(threading.get_ident(), None)
                if frame is not None:
                    self.samples[since].append(traceback.extract_stack(frame))
                    # the other threads (the worker) at the same moment: a GUI thread idle in Qt
                    # may be waiting for the GIL they hold
                    self.others[since].extend(traceback.extract_stack(f) for f in frames.values())

    def report(self, t0: float, min_ms: float, depth: int = 8) -> None:
        """Per stall longer than ``min_ms``: the innermost interesting frames, by sample count."""
        keep = ("isoapp", "pyqtgraph", "numpy", "scripts")
        for since, stacks in sorted(self.samples.items()):
            late_ms = len(stacks) * self.every_s * 1000
            if late_ms < min_ms - self.late_s * 1000:
                continue
            print(f"stall from {since - t0:.2f} s ({len(stacks)} samples after the first {self.late_s * 1000:.0f} ms):")
            counts: collections.Counter = collections.Counter()
            for st in stacks:
                frames = [f for f in st if any(k in f.filename for k in keep)][-depth:]
                counts[" <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))] += 1
            for path, n in counts.most_common(4):
                print(f"  {n:3d}x {path}")
            other: collections.Counter = collections.Counter()
            for st in self.others.get(since, []):
                frames = [f for f in st if "isoapp" in f.filename][-3:]
                if frames:
                    other[" <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))] += 1
            for path, n in other.most_common(2):
                print(f"      other thread {n:3d}x {path}")


def _runqueue_ms() -> float:
    """This thread's total time waiting for a CPU (ms), or NaN where Linux schedstat is missing."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="isonet")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 128, 128), metavar=("Z", "Y", "X"))
    parser.add_argument("--stack", default=None, help="a stack file to run on instead of a tubes phantom of --shape")
    parser.add_argument("--profile", action="store_true", help="sample the GUI thread's stack during stalls")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="set sys.setswitchinterval (seconds) after the window is made (an experiment)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="isoapp-resp-"))
    os.environ.setdefault("ISOAPP_GUI_SETTINGS", str(tmp / "settings.ini"))

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from isoapp.data.io import write_volume
    from isoapp.gui import create_main_window
    from isoapp.gui.estimate import is_training_step
    from isoapp.gui.settings import AppSettings
    from isoapp.quality.phantoms import make_phantom

    if args.stack:
        stack = args.stack
    else:
        ph = make_phantom("tubes", (args.shape[0] * 4 - 3, *args.shape[1:]), factor=4)
        stack = write_volume(ph.degraded, tmp / "phantom.tif")
    settings = AppSettings()
    settings.work_root = tmp / "runs"
    t_start = time.perf_counter()
    w = create_main_window(settings)
    print(f"window ready in {time.perf_counter() - t_start:.1f} s (includes the torch warm-up)")
    app = QApplication.instance()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(f"GIL switch interval {sys.getswitchinterval() * 1000:g} ms")
    w.show()
    w.open_path(stack)
    mp = w.method_panel
    mp.set_method(args.method)
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(args.steps)
    mp.preview_every.setValue(max(1, args.steps // 6) if args.steps else 25)  # --steps 0: the preset's
    mp.device.setCurrentText("cpu")
    est = mp.estimate()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    sampler = StallSampler() if args.profile else None

    cpu_ms: list[float] = []  # the GUI thread's CPU time and run-queue wait at each tick
    wait_ms: list[float] = []

    def on_tick() -> None:
        ticks.append(time.perf_counter())
        cpu_ms.append(time.thread_time() * 1000)
        wait_ms.append(_runqueue_ms())
        if sampler is not None:
            sampler.tick(ticks[-1])

    timer.timeout.connect(on_tick)
    state: dict = {"done": None, "eta20": None, "loops": 0, "totals": []}

    def on_progress(ev) -> None:
        clock = w.progress.clock
        if clock is not None:  # the whole-run total the ETA shown implies, at every progress event
            state["totals"].append((time.perf_counter() - t0, time.perf_counter() - t0 + clock.eta()))
        if is_training_step(ev):  # as the run's clock counts (the axial check's steps too)
            state["loops"] += 1
            if state["eta20"] is None and state["loops"] >= max(3, 0.2 * est.train_loops) and w.progress.clock:
                state["eta20"] = (time.perf_counter() - t0, w.progress.clock.total())

    w.run_started.connect(lambda wk: wk.progress.connect(on_progress))
    w.run_finished.connect(lambda r: state.__setitem__("done", r))
    w.run_failed.connect(lambda m: state.__setitem__("done", m))
    timer.start()
    if sampler is not None:
        sampler.start()
    t0 = time.perf_counter()
    w.start_run()
    while state["done"] is None and time.perf_counter() - t0 < 3600:
        app.processEvents()
        time.sleep(0.002)
    actual = time.perf_counter() - t0
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    if sampler is not None:
        sampler.stop()
    w.close()
    if isinstance(state["done"], str):
        print("run failed:", state["done"], file=sys.stderr)
        return 1
    gaps = np.diff(np.asarray(ticks)) * 1000
    where = args.stack or args.shape
    print(f"{args.method} fast, {args.steps or 'preset'} steps on {where}: run {actual:.1f} s")
    print(f"event loop: {len(ticks)} ticks, longest stall {gaps.max():.0f} ms, 99th percentile "
          f"{np.percentile(gaps, 99):.0f} ms, stalls > 100 ms: {int((gaps > 100).sum())}")
    cpu, wait = np.diff(cpu_ms), np.diff(wait_ms)
    for i in np.flatnonzero(gaps > 100):
        print(f"  stall of {gaps[i]:.0f} ms at {ticks[i] - t0:.2f} s into the run: GUI thread {cpu[i]:.0f} ms on a "
              f"CPU, {wait[i]:.0f} ms waiting for one, {gaps[i] - cpu[i] - wait[i]:.0f} ms other (GIL, blocked)")
    own = gaps - np.nan_to_num(wait)
    print(f"longest stall less run-queue wait: {own.max():.0f} ms (the GUI thread's own work and GIL waits)")
    if sampler is not None:
        sampler.report(t0, min_ms=60)
    print(f"estimate before the run: {est.total_s:.1f} s ({actual / max(est.total_s, 1e-9):.2f}x off)")
    if state["eta20"]:
        at, total = state["eta20"]
        print(f"whole-run estimate at {at:.1f} s (20 % of training): {total:.1f} s "
              f"(actual / estimate = {actual / total:.2f})")
    late = [(at, total) for at, total in state["totals"] if at >= 0.2 * actual]
    if late:
        worst = max(late, key=lambda p: abs(p[1] - actual))
        print(f"from 20 % of the run on, the ETA's whole-run total was {min(p[1] for p in late):.1f}–"
              f"{max(p[1] for p in late):.1f} s; worst {abs(worst[1] - actual) / actual:.0%} off (at {worst[0]:.0f} s)")
    for trial in state["done"].info.get("candidates") or []:
        print(f"  auto candidate {trial}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
