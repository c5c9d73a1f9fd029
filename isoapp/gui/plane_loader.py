"""Reading a file-backed stack's planes off the GUI thread: the newest request wins.

An XZ plane of a 2048 x 2048 x 2048 OME-Zarr result crosses 256 chunks of 64 x 256 x 256 voxels, so
moving a view's cursor there read about 4 GB of compressed chunks in the GUI thread (3 s) and froze
the window. A view of a stack left in its file asks a :class:`PlaneLoader` for the planes at its
cursor and keeps showing the last planes until they arrive; a request made while one is being read
replaces any request still waiting, so a dragged slider reads only where it stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

#: seconds the reading thread waits for another request before it ends (a new one starts on demand)
IDLE_SECONDS = 5.0


class PlaneLoader(QObject):
    """One background thread that runs the latest ``read`` callable and emits ``done(token, result)``.

    ``read`` may return None to give up (see :meth:`superseded`); nothing is emitted then.

    ``done`` is queued to the GUI thread (the loader lives there). A read that raises is logged and
    reported as ``failed(token, message)``; the view keeps its previous planes.
    """

    done = Signal(object, object)
    failed = Signal(object, str)
    partial = Signal(object, object)  # (token, part of the result): see report()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: tuple[Hashable, Callable[[], Any]] | None = None
        self._busy: Hashable | None = None
        self._latest: Hashable | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def request(self, token: Hashable, read: Callable[[], Any]) -> None:
        """Read with ``read()`` in the background; a request not started yet is replaced, and asking again
        for the read under way drops the waiting one."""
        with self._lock:
            if self._closed:
                return
            self._latest = token
            if token == self._busy:
                self._pending = None  # the read under way is the one wanted (again)
                return
            if self._pending is not None and self._pending[0] == token:
                return
            self._pending = (token, read)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="isoapp-planes", daemon=True)
                self._thread.start()
        self._wake.set()

    def superseded(self) -> bool:
        """True when another read is wanted than the one under way (it may stop: it would not be shown)."""
        with self._lock:
            return self._latest != self._busy

    def report(self, token: Hashable, part: Any) -> None:
        """Called by a ``read`` under way: emit ``partial(token, part)`` now, so what is read first is shown
        before the rest (the YZ plane of a ZYX file touches every page of it: ~9 s of a cold 4 GiB TIFF)."""
        with self._lock:
            if self._closed or self._busy != token or self._latest != token:
                return
        try:
            self.partial.emit(token, part)
        except RuntimeError:  # the view was deleted meanwhile
            self.close()

    def pending(self) -> bool:
        """True while a request waits or is being read."""
        with self._lock:
            return self._pending is not None or self._busy is not None

    def close(self) -> None:
        """Drop any waiting request and let the thread end (a read under way finishes unreported)."""
        with self._lock:
            self._closed = True
            self._pending = None
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(IDLE_SECONDS)
            with self._lock:
                self._wake.clear()
                if self._closed or self._pending is None:  # idle (or closed): end; a request starts another
                    self._thread = None
                    return
                (token, read), self._pending = self._pending, None
                self._busy = token
            try:
                result, error = read(), None
            except Exception as exc:  # noqa: BLE001 - a display read: reported, the view keeps its planes
                result, error = None, f"{type(exc).__name__}: {exc}"
                log.warning("could not read the planes to show: %s", error)
            gave_up = result is None and error is None  # stopped early for a newer request
            try:
                if not (self._closed or gave_up):
                    if error is None:
                        self.done.emit(token, result)
                    else:
                        self.failed.emit(token, error)
            except RuntimeError:  # the view was deleted meanwhile
                self.close()
            with self._lock:  # busy until reported: pending() covers the whole request
                self._busy = None
                if gave_up and self._pending is None and self._latest == token and not self._closed:
                    self._pending = (token, read)  # asked for again while it was giving up
                if self._pending is not None:
                    self._wake.set()
