"""Measure the GUI during a real training run: event-loop stalls and the accuracy of the time estimates.

Usage::

    QT_QPA_PLATFORM=offscreen python scripts/gui_responsiveness.py [--method isonet] [--steps 60]

A 10 ms QTimer ticks in the GUI thread while the method trains in the worker thread; the longest
gap between ticks is the longest event-loop stall (target: < 100 ms). It also prints the estimate
shown before the run, the whole-run ETA after 20 % of the training steps (elapsed + remaining),
and the actual duration. Timings on a shared or loaded machine are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="isonet")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 128, 128), metavar=("Z", "Y", "X"))
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="isoapp-resp-"))
    os.environ.setdefault("ISOAPP_GUI_SETTINGS", str(tmp / "settings.ini"))

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from isoapp.gui import create_main_window
    from isoapp.gui.settings import AppSettings
    from isoapp.io import write_volume
    from isoapp.phantoms import make_phantom

    ph = make_phantom("tubes", (args.shape[0] * 4 - 3, *args.shape[1:]), factor=4)
    stack = write_volume(ph.degraded, tmp / "phantom.tif")
    settings = AppSettings()
    settings.work_root = tmp / "runs"
    t_start = time.perf_counter()
    w = create_main_window(settings)
    print(f"window ready in {time.perf_counter() - t_start:.1f} s (includes the torch warm-up)")
    app = QApplication.instance()
    w.show()
    w.open_path(stack)
    mp = w.method_panel
    mp.set_method(args.method)
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(args.steps)
    mp.preview_every.setValue(max(1, args.steps // 6))
    mp.device.setCurrentText("cpu")
    est = mp.estimate()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    state: dict = {"done": None, "eta20": None, "loops": 0}

    def on_progress(ev) -> None:
        if ev.stage != "restore" and ev.loss is not None:
            state["loops"] += 1
            if state["eta20"] is None and state["loops"] >= max(3, 0.2 * est.train_loops) and w.progress.clock:
                state["eta20"] = (time.perf_counter() - t0, w.progress.clock.total())

    w.run_started.connect(lambda wk: wk.progress.connect(on_progress))
    w.run_finished.connect(lambda r: state.__setitem__("done", r))
    w.run_failed.connect(lambda m: state.__setitem__("done", m))
    timer.start()
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
    w.close()
    if isinstance(state["done"], str):
        print("run failed:", state["done"], file=sys.stderr)
        return 1
    gaps = np.diff(np.asarray(ticks)) * 1000
    print(f"{args.method} fast, {args.steps} steps on {args.shape}: run {actual:.1f} s")
    print(f"event loop: {len(ticks)} ticks, longest stall {gaps.max():.0f} ms, 99th percentile "
          f"{np.percentile(gaps, 99):.0f} ms, stalls > 100 ms: {int((gaps > 100).sum())}")
    for i in np.flatnonzero(gaps > 100):
        print(f"  stall of {gaps[i]:.0f} ms at {ticks[i] - t0:.2f} s into the run")
    print(f"estimate before the run: {est.total_s:.1f} s ({actual / max(est.total_s, 1e-9):.2f}x off)")
    if state["eta20"]:
        at, total = state["eta20"]
        print(f"whole-run estimate at {at:.1f} s (20 % of training): {total:.1f} s "
              f"(actual / estimate = {actual / total:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
