"""The GUI on a stack larger than the memory it may use: open time, plane reads, a block-wise run, peak RSS.

Usage (the stack from ``benchmarks/large_stack.py``)::

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_large.py /data/big.tif /data/out.zarr \\
        [--method linear] [--stop-after 0]

In one process, as a user would: the main window opens the stack (timed; it stays in its file when
its in-memory restoration needs more than half the free memory), the cursor is moved to five places
(each view's plane read, timed), the chosen method restores block by block into ``out`` (a 10 ms
QTimer in the GUI thread measures the longest event-loop stall; ``--stop-after S`` cancels after S
seconds, as a user would, since an IsoNet restore of 4 GiB takes hours on 2 cores), and the result
is shown from its file. Peak RSS is the whole GUI process's (``ru_maxrss``), not a worker's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


T0 = time.perf_counter()


def wait_shown(app, view) -> None:
    """Process events until ``view`` shows the planes at its cursor (read in the background from a file)."""
    while getattr(view, "planes_pending", lambda: False)():
        app.processEvents()
        time.sleep(0.002)


def move_cursor(app, views, zyx) -> tuple[float, float]:
    """Move the first view's cursor: (seconds the GUI thread was busy, seconds until every view showed it)."""
    t = time.perf_counter()
    views[0].set_cursor(*zyx)
    app.processEvents()
    busy = time.perf_counter() - t
    for view in views:
        wait_shown(app, view)
    return round(busy, 3), round(time.perf_counter() - t, 2)


def note(what: str) -> None:
    """A progress line on stderr (time since start, peak RSS so far): where the time and memory go."""
    import sys

    from isoapp.core.memory import current_rss_bytes

    print(f"[{time.perf_counter() - T0:7.1f} s, peak {rss_gb():.2f} GB, now {current_rss_bytes() / 2**30:.2f}] {what}",
          file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack")
    ap.add_argument("output")
    ap.add_argument("--method", default="linear")
    ap.add_argument("--steps", type=int, default=0, help="training steps (0: the preset's)")
    ap.add_argument("--stop-after", type=float, default=0.0, help="cancel the run after this many seconds")
    ap.add_argument("--memory-limit-mb", type=int, default=0,
                    help="Settings > 'Restore in memory up to' (0: half the free memory), to test smaller stacks")
    ap.add_argument("--why", action="store_true",
                    help="for each stall, print where the GUI thread and the run's thread were "
                         "(scripts/gui_responsiveness.py's stack sampler)")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from isoapp.core.memory import keep_freed_memory
    from isoapp.gui import create_main_window, dialogs
    from isoapp.gui.settings import AppSettings

    keep_freed_memory()
    app = QApplication.instance() or QApplication([])
    work = Path(args.output).with_suffix(".gui-bench")
    work.mkdir(exist_ok=True)
    settings = AppSettings.at_path(work / "settings.ini")
    settings.work_root = work / "runs"
    settings.memory_limit_mb = args.memory_limit_mb
    dialogs.set_hook("error", lambda *a: print("ERROR", a[1:]))
    w = create_main_window(settings)
    w.resize(1600, 1000)
    w.show()
    app.processEvents()
    rss0 = rss_gb()
    t0 = time.perf_counter()
    assert w.open_path(args.stack)
    t_xy = None
    while getattr(w.ortho, "planes_pending", lambda: False)():
        if t_xy is None and "xy" in getattr(w.ortho, "_partial", ((), set()))[1]:
            t_xy = time.perf_counter() - t0  # the XY plane on screen (XZ and YZ may still be read)
        app.processEvents()
        time.sleep(0.002)
    t_open = time.perf_counter() - t0
    note(f"opened in {t_open:.1f} s (XY plane shown after {t_xy if t_xy is not None else t_open:.1f} s)")
    out = {"stack": args.stack, "shape": list(w.input.shape), "lazy": w.input.is_lazy, "open_s": round(t_open, 2),
           "open_xy_shown_s": round(t_xy if t_xy is not None else t_open, 2),
           "rss_before_open_gb": round(rss0, 2), "rss_after_open_gb": round(rss_gb(), 2)}
    nz, ny, nx = w.input.spatial_shape
    moves = [move_cursor(app, [w.ortho], (int(f * nz), int(f * ny), int((1 - f) * nx)))
             for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
    note(f"cursor moves (GUI thread s, shown after s) {moves}")
    out.update(cursor_move_gui_s_max=max(m[0] for m in moves), cursor_move_s_max=max(m[1] for m in moves),
               cursor_move_s_median=sorted(m[1] for m in moves)[2], rss_after_views_gb=round(rss_gb(), 2))
    mp = w.method_panel
    mp.set_method(args.method)
    if args.steps:
        mp.steps.setValue(args.steps)
    mp.device.setCurrentText("cpu")
    ticks: list[float] = []
    stalls: list[str] = []
    stage = ["start"]

    def gui_major_faults() -> int:
        """The GUI thread's own major page faults (code or data read back from disk: a stall not caused by
        the GIL), from /proc/thread-self/stat; 0 where that does not exist."""
        try:
            return int(Path("/proc/thread-self/stat").read_text().rsplit(")", 1)[1].split()[9])
        except (OSError, IndexError, ValueError):
            return 0

    faults = [gui_major_faults()]
    collections: list[tuple[float, int, float]] = []  # (end time, generation, seconds) of each garbage collection
    gc_start = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            collections.append((time.perf_counter(), info["generation"], time.perf_counter() - gc_start[0]))

    import gc

    gc.callbacks.append(on_gc)

    def tick() -> None:
        now = time.perf_counter()
        majflt = gui_major_faults()
        if ticks and now - ticks[-1] > 0.1:
            gcs = [f"gen {g} {1e3 * d:.0f} ms" for end, g, d in collections if end > ticks[-1] and d > 0.01]
            stalls.append(f"{1e3 * (now - ticks[-1]):.0f} ms at {now - t0:.1f} s ({stage[0]}; "
                          f"{majflt - faults[0]} major faults in the GUI thread; garbage collections "
                          f"{', '.join(gcs) or 'none over 10 ms'})")
        faults[0] = majflt
        ticks.append(now)
        if sampler is not None:
            sampler.tick(now)

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    ended: list[str] = []
    w.run_finished.connect(lambda r: ended.append("finished"))
    w.run_started.connect(lambda wk: wk.stage.connect(lambda st, d: (note(f"stage {st}: {d}"),
                                                                    stage.__setitem__(0, f"{st}: {d}"))))
    w.run_cancelled.connect(lambda m: ended.append("cancelled"))
    w.run_failed.connect(lambda m: ended.append("failed: " + m))
    sampler = None
    if args.why:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
        from gui_responsiveness import StallSampler

        sampler = StallSampler()
        sampler.start()
    timer.start()
    t0 = time.perf_counter()
    w.start_run(output=args.output)
    while not ended:
        app.processEvents()
        time.sleep(0.002)
        if args.stop_after and time.perf_counter() - t0 > args.stop_after and w.runner.is_running():
            w.cancel_run()
    while w.runner.is_running():
        app.processEvents()
    timer.stop()
    if sampler is not None:
        import contextlib
        import sys

        sampler.stop()
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON
            sampler.report(t0, 100.0)
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    out.update(run=ended[0], run_s=round(time.perf_counter() - t0, 1), longest_stall_ms=round(1e3 * max(gaps), 1),
               stalls_over_100ms=sum(g > 0.1 for g in gaps), stalls=stalls, rss_after_run_gb=round(rss_gb(), 2))
    note(f"run {ended[0]}")
    if ended[0] == "finished":
        t = time.perf_counter()
        right = w.compare.right
        while right.data is None or w.compare.left.data is None:  # each view is shown in its own event-loop turn
            app.processEvents()
        for view in (right, w.compare.left):
            wait_shown(app, view)
        out["result_shown_s"] = round(time.perf_counter() - t, 2)
        note("result shown")
        views = [right, w.compare.left]  # linked: both show the new cursor
        moves = [move_cursor(app, views, (int(f * right.data.shape[0]), int(f * ny), int(f * nx)))
                 for f in (0.2, 0.5, 0.8)]
        note(f"result cursor moves (GUI thread s, shown after s) {moves}")
        out.update(result_cursor_move_gui_s_max=max(m[0] for m in moves),
                   result_cursor_move_s_max=max(m[1] for m in moves), rss_after_result_views_gb=round(rss_gb(), 2))
    out["peak_rss_gb"] = round(rss_gb(), 2)
    print(json.dumps(out))
    w.close()


if __name__ == "__main__":
    main()
