"""The main window: open, inspect, train and restore in the background, compare, save, send to Fiji."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..degrade import upsample
from ..errors import InputError, IsoappError
from ..io import write_volume
from ..restore import NORM_PERCENTILES
from ..volume import Volume
from . import dialogs, opening
from .compare import ComparePanel
from .estimate import timing_key
from .fiji_actions import FijiActions
from .log_panel import LogPanel, install_handler, remove_handler
from .method_panel import MethodPanel
from .orthoview import OrthoView
from .progress_panel import ProgressPanel
from .settings import AppSettings
from .settings_dialog import SettingsDialog
from .worker import RestoreWorker, RunController, restore_accepts

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """isoapp's main window. Scriptable: :meth:`open_path`, :meth:`start_run`, :meth:`save_result`."""

    volume_opened = Signal(object)
    run_started = Signal(object)  # the RestoreWorker
    run_finished = Signal(object)  # RestoreResult
    run_failed = Signal(str)
    run_cancelled = Signal(str)
    result_saved = Signal(str)

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self.input: Volume | None = None
        self.last_run: dict[str, Any] | None = None  # options + work_dir of a cancelled run
        self.runner = RunController(self)
        self.runner.thread_finished.connect(self._thread_finished)
        self.setWindowTitle("isoapp — isotropic restoration")
        self.setAcceptDrops(True)
        self.resize(1400, 900)

        self.log_panel = LogPanel(self)
        install_handler(self.log_panel.handler)
        self.ortho = OrthoView(self, title="Input")
        self.compare = ComparePanel(self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.ortho, "Input")
        self.tabs.addTab(self.compare, "Compare")
        self.setCentralWidget(self.tabs)
        self.progress = ProgressPanel(self)
        self.method_panel = MethodPanel(self)
        self.method_panel.timings = self._load_timings()
        self.method_panel.restore_state(self.settings.method_state)
        self.fiji = FijiActions(self, self.settings, self._fiji_context)
        self.fiji.sent.connect(lambda msg: self.statusBar().showMessage(msg, 8000))
        self._build_side_dock()
        self._build_bottom_docks()
        self._build_menus()
        geometry = self.settings.qs.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        self._set_running(False)
        self.statusBar().showMessage("Open a stack (File > Open, or drop a file on the window)")

    # ------------------------------------------------------------------ layout
    def _build_side_dock(self) -> None:
        self.info = QLabel("No stack open.", self)
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_button = QPushButton("Train && Restore", self)
        self.run_button.clicked.connect(lambda: self.start_run())
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setToolTip("continue the cancelled run from its checkpoint")
        self.resume_button.clicked.connect(lambda: self.start_run(resume=True))
        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.resume_button):
            buttons.addWidget(b)
        side = QWidget(self)
        lay = QVBoxLayout(side)
        lay.addWidget(self.info)
        lay.addWidget(self.method_panel)
        lay.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(400)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        panel = QWidget(self)  # the estimate and the run buttons stay visible below the scroll area
        pl = QVBoxLayout(panel)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(scroll, 1)
        pl.addWidget(self.method_panel.estimate_label)
        pl.addLayout(buttons)
        dock = QDockWidget("Stack && method", self)
        dock.setObjectName("dock_method")
        dock.setWidget(panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

    def _build_bottom_docks(self) -> None:
        self.progress_dock = QDockWidget("Progress && live preview", self)
        self.progress_dock.setObjectName("dock_progress")
        self.progress_dock.setWidget(self.progress)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("dock_log")
        self.log_dock.setWidget(self.log_panel)
        for d in (self.progress_dock, self.log_dock):
            d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                          | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.progress.setMinimumWidth(300)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.progress_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.resizeDocks([self.progress_dock], [460], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [150], Qt.Orientation.Vertical)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(shortcut)
        act.triggered.connect(lambda _checked=False: self._guard(slot))
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open OME-&Zarr folder…", self.open_zarr_dialog)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        self._action(file_menu, "Load &reference (ground truth)…", self.load_reference_dialog)
        self.save_action = self._action(file_menu, "&Save result as…", self.save_result,
                                        QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        self._action(file_menu, "&Settings…", self.open_settings)
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        run_menu = bar.addMenu("&Run")
        self._action(run_menu, "Train && &Restore", self.start_run, "Ctrl+R")
        self._action(run_menu, "&Cancel", self.cancel_run, "Esc")
        self._action(run_menu, "Res&ume", lambda: self.start_run(resume=True))
        bar.addMenu(self.fiji.menu)
        view = bar.addMenu("&View")
        for d in (self.progress_dock, self.log_dock):
            view.addAction(d.toggleViewAction())

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for entry in self.settings.recent_files:
            act = self.recent_menu.addAction(entry.replace("::", "  dataset "))
            act.triggered.connect(lambda _c=False, e=entry: self.open_path(*opening.split_recent(e)))
        if not self.settings.recent_files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.settings.clear_recent)

    def _guard(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every error becomes a dialog
            dialogs.report_exception(self, "isoapp", exc)

    # ------------------------------------------------------------------ opening
    def open_dialog(self) -> None:
        path = dialogs.open_file(self, "Open stack", self.settings.last_dir, opening.FILE_FILTER)
        if path:
            self.open_path(path)

    def open_zarr_dialog(self) -> None:
        path = dialogs.open_dir(self, "Open OME-Zarr folder", self.settings.last_dir)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path, dataset: str | None = None) -> bool:
        """Open a stack; errors become a dialog and leave the current stack as it was."""
        if self.runner.is_running():
            dialogs.show_error(self, "Open", "A run is in progress; cancel it before opening another stack.")
            return False
        try:
            volume, dataset = opening.load_volume(self, path, dataset, self.fiji.connect_session)
        except Exception as exc:  # noqa: BLE001
            dialogs.report_exception(self, f"Cannot open {Path(path).name}", exc)
            return False
        if volume is None:
            return False
        self.set_volume(volume)
        self.settings.add_recent(path, dataset)
        self.settings.last_dir = str(Path(path).resolve().parent)
        return True

    def set_volume(self, volume: Volume) -> None:
        """Show ``volume`` as the input (also for scripts that built it in memory)."""
        self.input = volume
        self.last_run = None
        self.ortho.set_volume(volume)
        self.method_panel.set_volume(volume)
        self.compare.set_input(volume)
        self.info.setText(opening.describe(volume))
        self.tabs.setCurrentWidget(self.ortho)
        self.setWindowTitle(f"isoapp — {volume.name}")
        self.statusBar().showMessage(volume.describe(), 10000)
        log.info("opened %s", volume.describe())
        self._set_running(False)
        self.volume_opened.emit(volume)

    def load_reference_dialog(self) -> None:
        path = dialogs.open_file(self, "Reference (isotropic ground truth)", self.settings.last_dir,
                                 opening.FILE_FILTER)
        if path:
            self.load_reference(path)

    def load_reference(self, path: str | Path) -> None:
        ref, _ = opening.load_volume(self, path, None, self.fiji.connect_session)
        if ref is not None:
            self.compare.set_reference(ref)
            self.tabs.setCurrentWidget(self.compare)

    # ------------------------------------------------------------------ running
    def _set_running(self, running: bool) -> None:
        has_input = self.input is not None
        self.run_button.setEnabled(has_input and not running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(not running and self.last_run is not None)
        self.method_panel.setEnabled(not running)
        self.save_action.setEnabled(not running)

    def _preview_inputs(self, factor: float, y: int, x: int) -> dict[str, np.ndarray]:
        data = np.asarray(self.input.channel(0, 0).data, np.float32)
        lo, hi = np.percentile(data, NORM_PERCENTILES)
        scale = 1.0 / max(hi - lo, 1e-12)
        return {"xz": (upsample(data[:, y, :], factor, axis=0) - lo) * scale,
                "yz": (upsample(data[:, :, x], factor, axis=0) - lo) * scale}

    def start_run(self, resume: bool = False) -> None:
        """Start Train & Restore (or resume the cancelled run) in the background."""
        if self.input is None:
            raise InputError("open a stack first (File > Open)")
        if self.runner.is_running():
            if not (self.runner.worker is not None and self.runner.worker.completed):
                return
            self.runner.wait(5000)  # the previous run has ended; its thread is winding down
        if resume:
            if self.last_run is None:
                raise IsoappError("there is no cancelled run to resume")
            opts = dict(self.last_run["options"], resume=True)
        else:
            opts = self.method_panel.options()
            self.settings.work_root.mkdir(parents=True, exist_ok=True)
            work = tempfile.mkdtemp(prefix=f"{self.input.name}-{opts['method']}-", dir=self.settings.work_root)
            opts.update(work_dir=work, resume=False)
            self._discard_checkpoint()
        factor = opts["factor"] or self.input.anisotropy
        nz, ny, nx = self.input.spatial_shape
        z, y, x = self.ortho.cursor
        if restore_accepts("preview_position"):
            opts["preview_position"] = (y, x)
            where = f"the cursor (y={y}, x={x})"
        else:
            y, x = ny // 2, nx // 2
            where = f"the volume centre (y={y}, x={x})"
        dz, dy, dx = self.input.voxel_size
        if factor > 1.0:
            self.progress.start((dz / factor, dy, dx), self._preview_inputs(factor, y, x), where)
        self.last_run = {"options": {k: v for k, v in opts.items() if k != "resume"}}
        worker = RestoreWorker(self.input, opts)
        worker.stage.connect(self.progress.set_stage)
        worker.progress.connect(self.progress.on_progress)
        worker.preview.connect(self.progress.on_preview)
        worker.log.connect(lambda level, msg: self.log_panel.append(str(level).upper(), msg))
        worker.finished.connect(self._run_finished)
        worker.failed.connect(self._run_failed)
        worker.cancelled.connect(self._run_cancelled)
        self.runner.start(worker)
        self._set_running(True)
        self.progress_dock.raise_()
        self.statusBar().showMessage(("Resuming " if resume else "Running ") + opts["method"])
        log.info("%s %s (%s preset) on %s; checkpoints in %s", "resuming" if resume else "starting",
                 opts["method"], opts["preset"], self.input.name, opts["work_dir"])
        self.run_started.emit(worker)

    def cancel_run(self) -> None:
        if self.runner.is_running():
            self.runner.stop()
            self.progress.set_stage("cancel", "Cancelling… (stops after the current step)")

    def _discard_checkpoint(self) -> None:
        if self.last_run and self.last_run["options"].get("work_dir"):
            shutil.rmtree(self.last_run["options"]["work_dir"], ignore_errors=True)
        self.last_run = None

    def _run_finished(self, result) -> None:
        vol = result.volume
        factor = float(result.info.get("factor", self.input.anisotropy))
        self._record_timing(result)
        self._discard_checkpoint()
        self.compare.add_result(result.info.get("method", vol.name), vol, factor)
        self.tabs.setCurrentWidget(self.compare)
        text = f"Done: {vol.name} {vol.shape}, trained {result.train_seconds:.1f} s, " \
               f"restored {result.restore_seconds:.1f} s"
        self.progress.finish(text)
        self.statusBar().showMessage(text, 15000)
        self.run_finished.emit(result)

    def _run_failed(self, message: str, details: str) -> None:
        self._discard_checkpoint()
        self.progress.finish("Failed")
        dialogs.show_error(self, "Restoration failed", message, details)
        self.run_failed.emit(message)

    def _run_cancelled(self, message: str) -> None:
        self.progress.finish("Cancelled: Resume continues from the checkpoint")
        self.statusBar().showMessage(f"Cancelled: {message}", 15000)
        self.run_cancelled.emit(message)

    def _thread_finished(self) -> None:
        self._set_running(False)

    def _load_timings(self) -> dict[str, dict]:
        return self.settings.get_json("timings", {}) or {}

    def _record_timing(self, result) -> None:
        info = result.info
        steps = int(info.get("steps") or 0)
        out_vox = int(np.prod(result.volume.shape))
        entry = {"s_per_voxel": result.restore_seconds / max(out_vox, 1)}
        if steps and result.train_seconds > 0:
            entry["s_per_step"] = result.train_seconds / steps / max(self.input.n_channels, 1)
        device = str(info.get("device", "cpu"))
        timings = self._load_timings()
        timings[timing_key(str(info.get("method")), str(info.get("preset")), device)] = entry
        self.settings.set_json("timings", timings)
        self.method_panel.timings = timings

    # ------------------------------------------------------------------ saving / Fiji
    def save_result(self, path: str | Path | None = None) -> Path | None:
        """Write the shown result atomically (TIFF, OME-TIFF, HDF5, OME-Zarr by extension)."""
        res = self.compare.current_result()
        if res is None:
            raise IsoappError("there is no restored result to save yet; run Train & Restore first")
        if path is None:
            start = str(Path(self.settings.last_dir) / f"{res.name}.tif")
            path = dialogs.save_file(self, "Save result", start, opening.SAVE_FILTER)
            if not path:
                return None
        path = Path(path)
        if not opening.is_supported(path) or path.name.lower().endswith(opening.BIOFORMATS_EXT):
            path = path.with_name(path.name + ".tif")
        inputs = [self.input.path] if self.input is not None and self.input.path else []
        out = write_volume(res, path, inputs=inputs)
        self.statusBar().showMessage(f"saved {out}", 10000)
        self.result_saved.emit(str(out))
        return out

    def _fiji_context(self) -> dict[str, Any]:
        return {"input": self.input, "result": self.compare.current_result(), "results": self.compare.results}

    def open_settings(self) -> None:
        SettingsDialog(self.settings, self).exec()

    # ------------------------------------------------------------------ drag & drop, closing
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt naming
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if any(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.runner.is_running():
            log.info("stopping the run before closing")
            self.runner.shutdown(60000)
        self.settings.method_state = self.method_panel.state()
        self.settings.qs.setValue("window/geometry", self.saveGeometry())
        self.settings.qs.sync()
        self.fiji.close()
        remove_handler(self.log_panel.handler)
        super().closeEvent(event)
