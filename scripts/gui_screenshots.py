"""Screenshots of the isoapp main window before, during and after a demo run.

Usage::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/gui_screenshots.py OUTDIR [--steps N]
    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/gui_screenshots.py OUTDIR --prefix small_

Writes ``01_opened.png`` (the phantom's orthoviews, MIP and the method panel), ``02_training.png``
(progress, loss curve and live XZ/YZ previews mid-training), ``03_compare.png`` (before/after side
by side, linked), ``04_wipe.png`` (wipe view), ``05_uncertainty.png`` (disagreement of IsoNet and
linear interpolation), ``06_input_after.png`` (the Input tab, log below) and ``07_auto.png`` (Compare
after an ``auto`` run: the report names the method it chose) to OUTDIR. The window
is maximised on the screen; the script fails when any part of it is off the screen. Settings go to
a temporary INI file, never to the user's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _wait(app, cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--prefix", default="", help="prefix of the PNG names")
    args = parser.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="isoapp-shots-"))
    os.environ.setdefault("ISOAPP_GUI_SETTINGS", str(tmp / "settings.ini"))

    from isoapp.data.io import write_volume
    from isoapp.gui import create_main_window
    from isoapp.gui.settings import AppSettings
    from isoapp.quality.phantoms import make_phantom

    phantom = make_phantom("tubes", (33, 128, 128), factor=4)
    deg = phantom.degraded
    deg.name = "tubes_phantom"
    stack = write_volume(deg, tmp / "tubes_phantom.tif")

    settings = AppSettings()
    settings.work_root = tmp / "runs"
    window = create_main_window(settings)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    window.showMaximized()
    if not window.open_path(stack):
        print("could not open the phantom", file=sys.stderr)
        return 1
    mp = window.method_panel
    mp.set_method("isonet")
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(args.steps)
    mp.preview_every.setValue(max(1, args.steps // 6))
    mp.device.setCurrentText("auto")
    window.ortho.set_cursor(4, 70, 60)
    _wait(app, lambda: False, 0.5)

    screen = window.screen().availableGeometry()
    off_screen: list[str] = []

    def shot(name: str) -> None:
        _wait(app, lambda: False, 0.3)
        path = out / (args.prefix + name)
        window.grab().save(str(path))
        frame = window.frameGeometry()
        if not screen.contains(frame):
            off_screen.append(f"{name}: window {frame.getRect()} vs screen {screen.getRect()}")
        print(f"wrote {path} (window {frame.width()}x{frame.height()} on {screen.width()}x{screen.height()})")

    shot("01_opened.png")
    events = {"previews": 0, "step": 0, "done": None}
    window.run_started.connect(lambda w: (
        w.preview.connect(lambda ev: events.__setitem__("previews", events["previews"] + 1)),
        w.progress.connect(lambda ev: events.__setitem__("step", ev.step if ev.stage == "isonet" else events["step"]))))
    window.run_finished.connect(lambda r: events.__setitem__("done", r))
    window.run_failed.connect(lambda m: events.__setitem__("done", m))
    window.start_run()
    _wait(app, lambda: events["previews"] >= 3 and events["step"] >= args.steps * 0.6, args.timeout)
    shot("02_training.png")
    if not _wait(app, lambda: events["done"] is not None, args.timeout):
        print("the demo run did not finish in time", file=sys.stderr)
        window.close()
        return 1
    _wait(app, lambda: not window.runner.is_running(), 30)
    shot("03_compare.png")
    window.compare.mode.setCurrentText("Wipe")
    window.compare.wipe.setValue(50)
    shot("04_wipe.png")
    window.compare.mode.setCurrentText("Side by side")
    events["done"] = None
    mp.set_method("linear")
    window.start_run()
    _wait(app, lambda: events["done"] is not None, args.timeout)
    _wait(app, lambda: not window.runner.is_running(), 30)
    window.compare.result_box.setCurrentIndex(0)
    window.compare.mode.setCurrentText("Uncertainty")
    shot("05_uncertainty.png")
    window.compare.mode.setCurrentText("Side by side")
    window.tabs.setCurrentWidget(window.ortho)
    shot("06_input_after.png")
    events["done"] = None
    mp.set_method("auto")
    mp.steps.setValue(args.steps)
    window.start_run()
    _wait(app, lambda: events["done"] is not None, args.timeout)
    _wait(app, lambda: not window.runner.is_running(), 30)
    shot("07_auto.png")
    window.close()
    for line in off_screen:
        print("OFF SCREEN", line, file=sys.stderr)
    return 0 if not isinstance(events["done"], str) and not off_screen else 1


if __name__ == "__main__":
    sys.exit(main())
