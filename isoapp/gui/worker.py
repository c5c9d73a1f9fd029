"""Background restoration: a QObject worker in a QThread that only relays the core's events.

:class:`RestoreWorker` calls :func:`isoapp.run.restore.restore` and turns its events into signals;
it never touches a widget. :class:`RunController` owns the thread and its lifetime. Every
QThread made here is tracked so that tests can check none is left running.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..core.errors import Cancelled
from ..core.volume import Volume
from ..training.events import LogEvent, PreviewEvent, ProgressEvent, StageEvent
from .dialogs import describe_exception
from .view_tools import shrink_for_display

log = logging.getLogger(__name__)

_THREADS: weakref.WeakSet[QThread] = weakref.WeakSet()


def live_threads() -> list[QThread]:
    """QThreads started by the GUI that are still running."""
    out = []
    for t in list(_THREADS):
        try:
            if t.isRunning():
                out.append(t)
        except RuntimeError:  # C++ object already deleted
            continue
    return out


_WARM = False


def warm_up() -> float:
    """Import what torch loads lazily on its first optimiser step (torch._dynamo, sympy: ~800 modules).

    Imports hold Python's GIL. Done in the worker thread during the first run, they froze the
    window for up to a second; done once here, before the window shows, they cost that second at
    start-up instead. Returns the seconds spent (0 after the first call).
    """
    global _WARM
    if _WARM:
        return 0.0
    import time

    t0 = time.perf_counter()
    import torch

    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=1e-3)
    (p * p).sum().backward()
    opt.step()
    _WARM = True
    return time.perf_counter() - t0


def restore_accepts(name: str) -> bool:
    """Whether :func:`isoapp.run.restore.restore` takes the keyword ``name`` (e.g. ``preview_position``)."""
    from ..run.restore import restore

    return name in inspect.signature(restore).parameters


class RestoreWorker(QObject):
    """Runs one ``restore()`` call (``restore_to_file()`` when the options name an ``output``); lives in a
    worker thread.

    Signals
    -------
    stage(str, str), progress(ProgressEvent), preview(PreviewEvent), log(str, str)
        Relayed core events.
    finished(RestoreResult), failed(str, str), cancelled(str)
        Exactly one of them ends the run; ``done`` follows it.
    """

    stage = Signal(str, str)
    progress = Signal(object)
    preview = Signal(object)
    log = Signal(str, str)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal(str)
    done = Signal()

    def __init__(self, volume: Volume, options: dict[str, Any]) -> None:
        super().__init__()
        self.volume = volume
        self.options = dict(options)
        self._stop = threading.Event()
        self.completed = False  # set just before ``done``

    def stop(self) -> None:
        """Ask the run to stop at the next step (thread-safe)."""
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def _emit(self, event: Any) -> None:
        if isinstance(event, ProgressEvent):
            self.progress.emit(event)
        elif isinstance(event, PreviewEvent):  # drawn small: shrunk here, not in the GUI thread
            self.preview.emit(PreviewEvent(event.stage, event.step, shrink_for_display(event.planes)))
        elif isinstance(event, StageEvent):
            self.stage.emit(event.stage, event.description)
        elif isinstance(event, LogEvent):
            self.log.emit(event.level, event.message)

    @Slot()
    def run(self) -> None:
        from ..run.restore import restore, restore_to_file

        try:
            if self.options.get("output"):  # a stack too large for memory: block by block into a file
                opts = {k: v for k, v in self.options.items() if k != "output"}
                result = restore_to_file(self.volume, self.options["output"], opts.pop("method", None),
                                         emit=self._emit, should_stop=self.should_stop, **opts)
                self.finished.emit(result)
                return
            result = restore(self.volume, emit=self._emit, should_stop=self.should_stop, **self.options)
        except Cancelled as exc:
            log.info("run cancelled: %s", exc)
            self.cancelled.emit(str(exc))
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a dialog, never a crash
            message, details = describe_exception(exc)
            if details:
                log.error("restoration failed:\n%s", details)
            self.failed.emit(message, details)
        else:
            try:  # the 'before' of the comparison, made here so the window does not freeze on big stacks
                from .compare import interpolated_input

                result.before = interpolated_input(self.volume, float(result.info.get("factor")))
            except Exception as exc:  # noqa: BLE001 - the window makes it itself then
                log.debug("no interpolated input from the worker: %s", exc)
            self.finished.emit(result)
        finally:
            self.completed = True
            self.done.emit()


class RunController(QObject):
    """Starts a :class:`RestoreWorker` in its own QThread and cleans up after it."""

    thread_finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: RestoreWorker | None = None
        self.thread: QThread | None = None

    def is_running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def start(self, worker: RestoreWorker) -> None:
        if self.is_running():
            raise RuntimeError("a run is already in progress")
        thread = QThread()
        thread.setObjectName("isoapp-restore")
        _THREADS.add(thread)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # quit from the worker thread itself so the thread ends as soon as run() returns
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        self.worker, self.thread = worker, thread
        thread.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the thread has ended; False if it is still running after ``timeout_ms``."""
        if self.thread is None:
            return True
        return bool(self.thread.wait(timeout_ms))

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Stop and wait (used when the window closes)."""
        self.stop()
        ok = self.wait(timeout_ms)
        if not ok:
            log.error("the restoration thread did not stop within %d s", timeout_ms // 1000)
        return ok

    def _on_thread_finished(self) -> None:
        self.thread_finished.emit()
