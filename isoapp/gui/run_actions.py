"""The main window's run handling: start, cancel, resume (also after a restart), and what a run leaves.

A mixin of :class:`isoapp.gui.main_window.MainWindow` (kept apart so each module stays small). Each
run gets a folder under the per-user runs folder with a ``run.json`` (see :mod:`.runs`); File >
Resume lists the unfinished ones.
"""

from __future__ import annotations

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QTimer

from ..core.errors import InputError, IsoappError
from ..core.memory import release_freed_memory
from ..core.volume import Volume
from ..data.io import registry
from ..data.levels import joint_levels, stats_sample
from ..data.normalize import NORM_PERCENTILES
from ..methods import get_method, method_label
from ..physics.forward import upsample
from ..quality.planes import channel_view, interpolated_view
from . import dialogs, runs
from .estimate import RunClock, timing_key, training_loops
from .report_panel import result_label
from .view_tools import shrink_for_display
from .worker import RestoreWorker, restore_accepts

log = logging.getLogger(__name__)

#: the training region of a block-wise run from the GUI: half the CLI's (TRAIN_BUDGET_BYTES). Fitting
#: held up to 3.7x its region in numpy arrays (1.41 GB for the 384 MiB region of the 4 GiB benchmark
#: stack, linear with its checks), and the GUI process itself holds about 0.6 GB (Qt, torch, views):
#: 192 MiB keeps the whole process near the 2 GB the app aims for (benchmarks/gui_large.py). The fast
#: and balanced presets sample far fewer patches than such a region holds.
GUI_TRAIN_BUDGET_BYTES = 192 * 2**20


class RunMixin:
    """Run actions of the main window (uses its widgets; no state of its own but ``last_run``)."""

    last_run: dict[str, Any] | None

    # ------------------------------------------------------------------ buttons
    def _set_running(self, running: bool) -> None:
        self._running = running
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(not running and self.last_run is not None)
        self.method_panel.setEnabled(not running)
        self.save_action.setEnabled(not running)
        self._update_run_button()

    def _update_run_button(self) -> None:
        """Run is enabled only with valid settings; it says "Restore" for methods that do not train."""
        trains = get_method(self.method_panel.method_id()).trainable
        text = "Train && Restore" if trains else "Restore"
        self.run_button.setText(text)
        self.run_action.setText(text)
        problem = self.method_panel.problem()
        ok = not problem and not getattr(self, "_running", False)
        self.run_button.setEnabled(ok)
        self.run_action.setEnabled(ok)
        self.run_button.setToolTip(problem or ("train the method on this stack, then restore it" if trains
                                               else "restore this stack with the chosen method"))

    def _preview_range(self) -> tuple[float, float]:
        """The normalisation of the previews: the input's percentiles, of a bounded sample (of a few
        planes when the stack stays in its file; a percentile of a whole 1 GB stack took seconds)."""
        lo, hi = np.percentile(stats_sample(channel_view(self.input, 0, 0)), NORM_PERCENTILES)
        return float(lo), float(hi)

    def _preview_inputs(self, factor: float, y: int, x: int) -> dict[str, np.ndarray]:
        """The input's XZ and YZ planes at ``(y, x)`` on the output grid, normalised (and the normalisation
        kept for the result's previews)."""
        data = channel_view(self.input, 0, 0)
        lo, hi = self._preview_norm = self._preview_range()
        scale = 1.0 / max(hi - lo, 1e-12)
        planes = {"xz": (upsample(np.asarray(data[:, y, :], np.float32), factor, axis=0) - lo) * scale,
                  "yz": (upsample(np.asarray(data[:, :, x], np.float32), factor, axis=0) - lo) * scale}
        # levels and the shrinking for display here, not in the GUI thread
        return shrink_for_display({**planes, "levels": joint_levels(planes["xz"], planes["yz"])})

    def _read_previews(self, kind: str, read, in_file: bool) -> None:
        """Show the planes ``read()`` gives as the previews' ``kind`` ("inputs" or a result's label).

        ``in_file``: read off the GUI thread (reading the XZ and YZ planes of a 4 GiB TIFF took 0.25 s,
        of a 2048^3 OME-Zarr result 2.1 s). One reading thread keeps the order: the input planes
        (and their normalisation) come before the result's. Planes read for an earlier run are dropped.
        """
        token = getattr(self, "_preview_token", None)
        if not in_file:
            self._preview_planes_read(kind, token, read())
            return

        def job() -> None:
            try:
                planes = read()
            except Exception as exc:  # noqa: BLE001 - a preview: the stack itself is in the views
                log.warning("could not read the preview planes (%s): %s", kind, exc)
                return
            try:
                self.preview_planes_read.emit(kind, token, planes)
            except RuntimeError:  # the window closed meanwhile
                pass

        if getattr(self, "_preview_reader", None) is None:
            self._preview_reader = ThreadPoolExecutor(1, thread_name_prefix="isoapp-preview")
        self._preview_reader.submit(job)

    def _preview_planes_read(self, kind: str, token: object, planes: dict[str, np.ndarray]) -> None:
        if token != getattr(self, "_preview_token", None):
            return
        if kind == "inputs":
            self.progress.show_inputs(planes)
        else:
            self.progress.show_result(kind, planes)

    def ask_block_output(self) -> str | None:
        """Where a block-wise run writes (OME-Zarr or OME-TIFF); None when the user cancelled."""
        start = str(Path(self.settings.last_dir) / f"{self.input.name}_iso.zarr")
        path = dialogs.save_file(self, "Restore block by block into", start, registry.blockwise_filter())
        if not path:
            return None
        p = Path(path)
        if not p.name.lower().endswith(registry.blockwise_extensions()):
            p = p.with_name(p.name + ".zarr")
        return str(p)

    def _check_block_output(self, output: str) -> None:
        """Refuse the input itself, an unwritable folder or too little disk, before any training."""
        from ..data.io.safety import PlannedOutput, check_outputs
        from ..run.restore import in_memory_need

        out = Path(output).expanduser().absolute()
        size = in_memory_need(self.input) // 3  # about the float32 result (of the stack and its copies)
        check_outputs([PlannedOutput(out, "the output", "volume", size, zarr=out.suffix.lower() == ".zarr")],
                      [("the input", self.input.path)], overwrite=True)

    # ------------------------------------------------------------------ start / resume
    def start_run(self, resume: bool = False, output: str | None = None) -> None:
        """Start the run (or resume the cancelled one) in the background.

        A stack left in its file (too large for memory), or a given ``output``, is restored block by
        block into ``output`` (asked for when not given); otherwise the result stays in memory.
        """
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
            problem = self.method_panel.problem()
            if problem:
                raise IsoappError(problem)
            opts = self.method_panel.options()
            if output is None and self.input.is_lazy:
                output = self.ask_block_output()
                if output is None:
                    return
            if output is not None:
                self._check_block_output(output)
                opts["output"] = str(Path(output).expanduser().absolute())
                # an 8/16-bit stack keeps its type and intensity units (a float32 copy of a 20 GB uint16
                # stack would take 40 GB more); float stacks stay float32
                opts["dtype"] = self.input.dtype.name if self.input.dtype.name in ("uint8", "uint16") else "float32"
                if self.settings.scheduler:
                    opts["scheduler"] = self.settings.scheduler
                opts["train_budget_bytes"] = GUI_TRAIN_BUDGET_BYTES
            elif restore_accepts("residual_map"):
                opts["residual_map"] = True  # the Compare tab's residual view (channel 0, input grid)
            self.settings.work_root.mkdir(parents=True, exist_ok=True)
            work = tempfile.mkdtemp(prefix=f"{self.input.name}-{opts['method']}-", dir=self.settings.work_root)
            opts.update(work_dir=work, resume=False)
            self._discard_checkpoint()
        label = method_label(opts["method"])
        runs.write_run(opts["work_dir"], input_path=str(self.input.path) if self.input.path else None,
                       dataset=self.input.metadata.get("dataset"), options=opts, label=label)
        factor = float(opts.get("factor") or self.input.anisotropy)
        nz, ny, nx = self.input.spatial_shape
        z, y, x = self.ortho.cursor
        if restore_accepts("preview_position"):
            opts["preview_position"] = (y, x)
            where = f"the cursor (y={y}, x={x})"
        else:
            y, x = ny // 2, nx // 2
            where = f"the volume centre (y={y}, x={x})"
        self._preview_yx = (y, x)  # where the previews cut; the result is shown there at the end
        self._run_resumed = resume  # a resumed run's training time covers only its last part
        dz, dy, dx = opts.get("voxel_size") or self.input.voxel_size
        est = self.method_panel.estimate()
        trains = get_method(opts["method"]).trainable
        to_file = bool(opts.get("output"))  # the estimate is of an in-memory run; blocks report their own ETA
        self.progress.start((dz / factor, dy, dx), where, keep_history=resume,
                            clock=RunClock(est) if est is not None and not to_file else None, live=trains)
        self._preview_token, self._preview_norm = opts["work_dir"], None
        self._read_previews("inputs", lambda: self._preview_inputs(factor, y, x), in_file=self.input.is_lazy)
        self.report.clear()
        self.last_run = {"options": {k: v for k, v in opts.items() if k not in ("resume", "preview_position")}}
        worker = RestoreWorker(self.input, opts)
        worker.stage.connect(self.progress.set_stage)
        worker.progress.connect(self.progress.on_progress)
        worker.preview.connect(self.progress.on_preview)
        worker.log.connect(self.log_panel.append_event)  # a bound slot: runs in the GUI thread
        worker.finished.connect(self._run_finished)
        worker.failed.connect(self._run_failed)
        worker.cancelled.connect(self._run_cancelled)
        self.runner.start(worker)
        self._set_running(True)
        self.progress_dock.raise_()
        self.statusBar().showMessage(("Resuming " if resume else "Running ") + label)
        log.info("%s %s (%s preset) on %s; checkpoints in %s", "resuming" if resume else "starting",
                 label, opts["preset"], self.input.name, opts["work_dir"])
        self.run_started.emit(worker)

    def resume_run(self, record: runs.RunRecord) -> None:
        """Continue a run listed under File > Resume (reopening its input if needed)."""
        if self.runner.is_running():
            raise IsoappError("a run is in progress; cancel it before resuming another")
        if not record.input_path or not Path(record.input_path).exists():
            raise InputError(f"the input of this run ({record.input_path or 'a stack not from a file'}) cannot "
                             "be opened any more; start a new run")
        same = (self.input is not None and self.input.path is not None
                and Path(self.input.path).resolve() == Path(record.input_path).resolve())
        if not same and not self.open_path(record.input_path, record.dataset):
            return
        self.last_run = {"options": dict(record.options, work_dir=str(record.work_dir))}
        self.start_run(resume=True)

    def _fill_resume(self) -> None:
        self.resume_menu.clear()
        found = [r for r in runs.list_runs(self.settings.work_root)
                 if not (self.runner.is_running() and self.last_run
                         and Path(self.last_run["options"]["work_dir"]) == r.work_dir)]
        for rec in found:
            act = self.resume_menu.addAction(rec.title())
            act.setEnabled(rec.resumable)
            act.setToolTip(str(rec.work_dir))
            act.triggered.connect(lambda _c=False, r=rec: self._guard(lambda: self.resume_run(r)))
        if not found:
            self.resume_menu.addAction("(no unfinished runs)").setEnabled(False)
        self.resume_menu.addSeparator()
        self.resume_menu.addAction(f"Runs folder: {self.settings.work_root}").setEnabled(False)

    # ------------------------------------------------------------------ end of a run
    def cancel_run(self) -> None:
        if self.runner.is_running():
            self.runner.stop()
            self.progress.set_stage("cancel", "Cancelling… (stops after the current step)")

    def _discard_checkpoint(self) -> None:
        if self.last_run and self.last_run["options"].get("work_dir"):
            runs.remove_run(self.last_run["options"]["work_dir"])
        self.last_run = None

    def _run_finished(self, result) -> None:
        release_freed_memory()  # the run's buffers: not kept resident while the result is viewed
        if not hasattr(result, "volume"):  # a block-wise run: the result is in its file
            self._file_run_finished(result)
            return
        vol = result.volume
        factor = float(result.info.get("factor", self.input.anisotropy))
        self._discard_checkpoint()
        # the measured speed is written in a later event-loop turn: writing the settings file
        # (QSettings.sync) took ~25 ms of the turn that also shows the result
        channels = max(self.input.n_channels, 1)
        QTimer.singleShot(0, lambda: self._record_timing(result, channels))
        label = result_label(result.info, vol.name)  # for auto, the method it chose
        resid = getattr(result, "residual", None)
        resid = None if resid is None else Volume(resid, "ZYX", self.input.voxel_size, name=f"{vol.name}_residual")
        self.compare.add_result(label, vol, factor, getattr(result, "before", None), resid)
        self.results_info[label] = dict(result.info)
        self.report.show_info(result.info, label)
        self._show_result_preview(vol, label)
        self.tabs.setCurrentWidget(self.compare_tab)
        text = (f"Done: {label}, {vol.shape}, trained {result.train_seconds:.1f} s, "
                f"restored {result.restore_seconds:.1f} s")
        self.progress.finish(text)
        self.statusBar().showMessage(text, 15000)
        self.run_finished.emit(result)

    def _file_run_finished(self, result) -> None:
        """Open the written result lazily and show it beside the input interpolated plane by plane."""
        from ..data.io import read_volume

        self._discard_checkpoint()
        vol = read_volume(result.path, lazy=True)
        factor = float(result.info.get("factor", self.input.anisotropy))
        label = result_label(result.info, vol.name)
        self.compare.add_result(label, vol, factor, interpolated_view(self.input, factor) if self.input.is_lazy
                                else None)
        self.results_info[label] = dict(result.info)
        self.report.show_info(result.info, label)
        self._show_result_preview(vol, label)
        self.tabs.setCurrentWidget(self.compare_tab)
        run = result.run
        text = (f"Done: {label}, {vol.shape} in {result.path.name}, trained {result.train_seconds:.1f} s, "
                f"{run.total} blocks ({run.skipped} done before) in {run.seconds:.1f} s")
        self.progress.finish(text)
        self.statusBar().showMessage(text, 15000)
        self.run_finished.emit(result)

    def _show_result_preview(self, vol, label: str) -> None:
        """The live previews end on the kept result (after auto: the chosen method, not the last trained),
        normalised as the input's previews were."""
        y, x = getattr(self, "_preview_yx", (None, None))
        if y is None:
            return
        res = channel_view(vol, 0, 0)
        y, x = min(y, res.shape[1] - 1), min(x, res.shape[2] - 1)

        def read() -> dict[str, np.ndarray]:
            lo, hi = getattr(self, "_preview_norm", None) or self._preview_range()
            scale = 1.0 / max(hi - lo, 1e-12)
            return shrink_for_display({"xz": (np.asarray(res[:, y, :], np.float32) - lo) * scale,
                                       "yz": (np.asarray(res[:, :, x], np.float32) - lo) * scale})

        self._read_previews(label, read, in_file=vol.is_lazy or self.input.is_lazy)

    def _run_failed(self, message: str, details: str) -> None:
        self._discard_checkpoint()
        self.progress.finish("Failed", "failed")
        dialogs.show_error(self, "Restoration failed", message, details)
        self.run_failed.emit(message)

    def _run_cancelled(self, message: str) -> None:
        if self.last_run:
            runs.set_status(self.last_run["options"]["work_dir"], "cancelled")
        self.progress.finish("Cancelled: Resume continues from the checkpoint", "cancelled")
        self.statusBar().showMessage(f"Cancelled: {message}", 15000)
        self.run_cancelled.emit(message)

    def _thread_finished(self) -> None:
        release_freed_memory()  # also after a cancelled or failed run
        self._set_running(False)

    def _load_timings(self) -> dict[str, dict]:
        return self.settings.get_json("timings", {}) or {}

    def _record_timing(self, result, channels: int = 1) -> None:
        """Keep this machine's measured speed for the next estimate of the same method/preset/device.

        Seconds per loop count every loop the estimate counts: the axial check trains the method a
        second time (channel 0), and its time is in ``train_seconds``. Auto records each candidate
        under the candidate's own key (its estimate adds the candidates up), its restore under the
        chosen one's. A resumed run's training time covers only part of its loops: not recorded."""
        info = result.info
        device, preset = str(info.get("device", "cpu")), str(info.get("preset"))
        resumed = getattr(self, "_run_resumed", False)
        timings = self._load_timings()

        def learn(name: str, train_s: float, loops: float) -> None:
            key = timing_key(name, preset, device)
            if train_s > 0 and loops > 0 and not resumed:
                timings[key] = {**timings.get(key, {}), "s_per_loop": train_s / loops}

        name = str(info.get("method"))
        if name == "auto":
            for trial in info.get("candidates") or []:  # its training and, when it ran, its axial check
                cand = str(trial["method"])
                learn(cand, float(trial.get("train_s") or 0), training_loops(
                    get_method(cand), int(trial.get("steps") or 0), axial="axial_gain_db" in trial))
            name = str(info.get("chosen") or name)
        else:
            axial = info.get("axial")
            learn(name, result.train_seconds, training_loops(
                get_method(name), int(info.get("steps") or 0), channels,
                axial=isinstance(axial, dict) and "skipped" not in axial))
        key = timing_key(name, preset, device)
        out_vox = int(np.prod(result.volume.shape))
        timings[key] = {**timings.get(key, {}), "s_per_voxel": result.restore_seconds / max(out_vox, 1)}
        self.settings.set_json("timings", timings)
        self.method_panel.timings = timings
        self.method_panel.estimate_label.setText(self.method_panel.estimate_text())
