"""The whole desktop flow driven by real X events (xdotool) under Xvfb, with screenshots.

Usage::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/gui_xdotool_flow.py OUTDIR

Phase 1 (this process): File > Open (typed into Qt's file dialog) -> pick Linear interpolation in
the method box -> Ctrl+R -> Compare (checked not black) -> Fiji > Send result to Fiji (a real
ImageJ: Debian's ``ij.jar`` started as its own program, as for a user without Fiji.app; a user's
Fiji.app cannot exist here) -> pick IsoNet, 400 steps -> Ctrl+R -> Ctrl+Q mid-run -> Yes in the
"Quit isoapp" question. ImageJ must outlive isoapp and hold the result once, calibrated.
Phase 2 (a fresh process, like a restart): File > Resume run > the run -> it finishes at step 400
from its checkpoint (not from step 1) and its run folder is gone.

Every input is a real X event (``xdotool`` through XTEST); the script only reads the app's state,
in the GUI thread, to know where widgets are and when to go on. PNGs of each step go to OUTDIR.
Settings, runs folder and HOME are temporary, never the user's.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 400


def xdo(*args: str) -> None:
    """One xdotool command (real X input through XTEST)."""
    subprocess.run(["xdotool", *args], check=True, timeout=30)


class Gui:
    """Runs callables in the GUI thread for the driver thread (also inside modal dialogs' loops)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.calls: queue.Queue = queue.Queue()
        self.timer = QTimer()
        self.timer.timeout.connect(self._drain)
        self.timer.start(20)

    def _drain(self) -> None:
        while not self.calls.empty():
            fn, box = self.calls.get()
            try:
                box.put((True, fn()))
            except Exception as exc:  # noqa: BLE001 - handed to the driver thread
                box.put((False, exc))

    def __call__(self, fn, timeout: float = 60):
        box: queue.Queue = queue.Queue()
        self.calls.put((fn, box))
        ok, value = box.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def wait(self, cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self(cond):
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def click(self, widget_of) -> None:
        """Move the pointer to the centre of a widget and click it."""
        x, y = self(lambda: (lambda w: (w.mapToGlobal(w.rect().center()).x(),
                                        w.mapToGlobal(w.rect().center()).y()))(widget_of()))
        xdo("mousemove", "--sync", str(x), str(y))
        xdo("click", "1")


def shot(gui: Gui, out: Path, name: str) -> None:
    """The whole X screen (isoapp and any ImageJ windows)."""
    from PySide6.QtWidgets import QApplication

    time.sleep(0.5)
    gui(lambda: QApplication.primaryScreen().grabWindow(0).save(str(out / name)))
    print("wrote", out / name, flush=True)


def not_black(view) -> float:
    """Fraction of non-black pixels in an orthoview's canvas (a black Compare was defect 1)."""
    import numpy as np

    img = view.graphics.grab().toImage().convertToFormat(view.graphics.grab().toImage().Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[..., :3]
    return float((a.max(axis=2) > 40).mean())


def pick_method(gui: Gui, w, letter: str, method: str) -> None:
    gui.click(lambda: w.method_panel.method)
    time.sleep(0.3)
    xdo("type", letter)
    xdo("key", "Return")
    gui.wait(lambda: w.method_panel.method_id() == method, 10, f"the method box to show {method}")


def phase_one(gui: Gui, w, out: Path, stack: Path, events: dict) -> None:
    xdo("mousemove", "--sync", "400", "300")
    xdo("key", "ctrl+o")  # Qt's file dialog: type the path into its file name box
    time.sleep(1.5)
    shot(gui, out, "x00_open_dialog.png")
    xdo("type", "--delay", "20", str(stack))
    xdo("key", "Return")
    gui.wait(lambda: w.input is not None, 30, "the stack to open")
    shot(gui, out, "x01_opened.png")
    pick_method(gui, w, "L", "linear")
    xdo("key", "ctrl+r")
    gui.wait(lambda: events["done"] is not None and not w.runner.is_running(), 120, "the linear run")
    gui.wait(lambda: w.compare.right.data is not None, 10, "the after view")
    time.sleep(0.5)
    lit = gui(lambda: (not_black(w.compare.left), not_black(w.compare.right)))
    assert gui(lambda: w.tabs.currentWidget() is w.compare_tab), "Compare is shown after a run"
    assert min(lit) > 0.05, f"Compare is black: {lit}"
    print(f"Compare lit: before {lit[0]:.2f}, after {lit[1]:.2f} of the canvas", flush=True)
    shot(gui, out, "x02_compare.png")

    xdo("key", "alt+i")  # the Fiji menu; its first entry sends the result
    time.sleep(0.5)
    xdo("key", "Return")
    gui.wait(lambda: w.fiji.last_sent is not None and w.fiji.handoff is not None, 60, "the send to ImageJ")
    events["imagej"] = gui(lambda: w.fiji.handoff.processes[0].pid)
    events["sent"] = gui(lambda: str(w.fiji.last_sent))
    time.sleep(8)  # ImageJ starts and opens the stack
    shot(gui, out, "x03_imagej.png")

    pick_method(gui, w, "I", "isonet")
    gui.click(lambda: w.method_panel.steps)
    xdo("key", "ctrl+a")
    xdo("type", str(STEPS))
    xdo("key", "Tab")
    gui.wait(lambda: w.method_panel.steps.value() == STEPS, 10, f"{STEPS} steps")
    events["done"] = None
    xdo("key", "ctrl+r")
    gui.wait(lambda: events["step"] >= 5, 300, "a few training steps")
    shot(gui, out, "x04_training.png")
    xdo("key", "ctrl+q")
    time.sleep(1.0)
    shot(gui, out, "x05_quit_question.png")
    xdo("key", "alt+y")  # Yes: stop the run and quit (its checkpoint is kept)


def phase_two(gui: Gui, w, out: Path, events: dict) -> None:
    xdo("mousemove", "--sync", "400", "300")
    xdo("key", "alt+f")
    time.sleep(0.5)
    xdo("key", "u")  # Res&ume run
    time.sleep(0.8)
    shot(gui, out, "x06_resume_menu.png")
    xdo("key", "Return")
    gui.wait(lambda: events["first_step"] is not None, 120, "the resumed run to train")
    first = events["first_step"]
    assert first > 1, f"the resumed run started from step {first}, not from its checkpoint"
    print(f"resumed at step {first} of {STEPS}", flush=True)
    gui.wait(lambda: events["done"] is not None and not w.runner.is_running(), 900, "the resumed run")
    assert not isinstance(events["done"], str), events["done"]
    assert events["done"].info["steps"] == STEPS
    time.sleep(1)
    shot(gui, out, "x07_resumed_done.png")


def run_phase(phase: str, out: Path, tmp: Path) -> int:
    os.environ["ISOAPP_GUI_SETTINGS"] = str(tmp / "settings.ini")
    import logging

    from PySide6.QtWidgets import QApplication

    handler = logging.FileHandler(out / f"phase_{phase}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("isoapp", "fiji_bridge"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.DEBUG)

    from isoapp.gui import create_main_window, dialogs
    from isoapp.gui.settings import AppSettings

    settings = AppSettings()
    settings.work_root = tmp / "runs"
    w = create_main_window(settings)
    app = QApplication.instance()
    w.show()
    w.move(0, 0)
    errors: list[str] = []
    real_error = dialogs.HOOKS["error"]
    dialogs.set_hook("error", lambda *a: (errors.append(str(a[2])), real_error(*a))[1])
    events: dict = {"done": None, "step": 0, "first_step": None}

    def on_progress(ev) -> None:
        if ev.stage == "isonet":
            events["step"] = ev.step
            events["first_step"] = events["first_step"] or ev.step

    w.run_started.connect(lambda wk: wk.progress.connect(on_progress))
    w.run_finished.connect(lambda r: events.__setitem__("done", r))
    w.run_failed.connect(lambda m: events.__setitem__("done", m))
    gui = Gui()
    result: dict = {}

    def drive() -> None:
        try:
            gui.wait(lambda: w.isVisible(), 30, "the window")
            # what a window manager does for a new window; Xvfb has none
            gui(lambda: (w.raise_(), w.activateWindow()))
            time.sleep(0.5)
            if phase == "one":
                phase_one(gui, w, out, tmp / "tubes_phantom.tif", events)
            else:
                phase_two(gui, w, out, events)
                gui(w.close)
            result["ok"] = True
        except BaseException as exc:  # noqa: BLE001 - reported, and the app is closed
            result["error"] = exc
            gui(lambda: (w.runner.stop(), w.runner.shutdown(30000), dialogs.set_hook("ask", lambda *a: True),
                         w.close()))
        finally:
            result["events"] = events

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    app.exec()
    # the driver thread may still hold `gui` when the app quits: let it finish, then stop the QTimer here,
    # in the thread that owns it (a QTimer destroyed in the driver thread makes Qt print "killTimer:
    # Timers cannot be stopped from another thread" at exit)
    driver.join(timeout=30)
    gui.timer.stop()
    if "error" in result:
        print("FAILED:", result["error"], file=sys.stderr)
        return 1
    if errors:
        print("error dialogs:", errors, file=sys.stderr)
        return 1
    if phase == "one":
        pid = events["imagej"]
        os.kill(pid, 0)  # isoapp has quit; ImageJ is still running (raises if it is not)
        print(f"ImageJ (pid {pid}) outlived isoapp; it was sent {events['sent']}", flush=True)
        (tmp / "imagej.pid").write_text(str(pid))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--phase", choices=("one", "two"), help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    if args.phase:
        return run_phase(args.phase, out, Path(args.tmp))
    if shutil.which("xdotool") is None or not os.environ.get("DISPLAY"):
        print("needs xdotool and an X display (run under xvfb-run; apt-get install xdotool)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="isoapp-xdo-"))
    from isoapp.data.io import write_volume
    from isoapp.quality.phantoms import make_phantom

    ph = make_phantom("tubes", (33, 128, 128), factor=4)
    ph.degraded.name = "tubes_phantom"
    write_volume(ph.degraded, tmp / "tubes_phantom.tif")
    env = dict(os.environ, HOME=str(tmp), XDG_DATA_HOME=str(tmp / "data"), XDG_CONFIG_HOME=str(tmp / "config"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("FIJI_DIR", None)
    env.pop("QT_QPA_PLATFORM", None)
    rc = 0
    try:
        for phase in ("one", "two"):
            print(f"--- phase {phase}", flush=True)
            rc = subprocess.run([sys.executable, __file__, str(out), "--phase", phase, "--tmp", str(tmp)],
                                env=env, timeout=1500).returncode
            if rc:
                break
        runs = [p for p in (tmp / "runs").iterdir()] if (tmp / "runs").is_dir() else []
        if rc == 0 and runs:
            print("run folders left after the resumed run finished:", runs, file=sys.stderr)
            rc = 1
    finally:
        pid_file = tmp / "imagej.pid"
        if pid_file.exists():  # the ImageJ this flow started
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    print("FLOW_OK" if rc == 0 else "FLOW_FAILED", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
