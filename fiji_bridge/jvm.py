"""The one JVM of the process: offline start, AWT event-thread calls and a clean shutdown.

Java is started at most once per process (a JVM cannot be restarted). Starting is guarded by a
lock so it may happen on a background thread (the GUI does so). scyjava is told never to fetch a
JDK and never to resolve Maven endpoints: the classpath is given as explicit jar paths.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import BridgeError, NoBackendError

log = logging.getLogger(__name__)

_LOCK = threading.RLock()
SHUTDOWN_TIMEOUT_S = 10
#: What this process's JVM was started with (None until started by the bridge).
STATE: dict[str, Any] = {"started_by": None, "headless": None, "classpath": (), "backend": None,
                         "gateway": None}


def configure_offline() -> None:
    """Make scyjava unable to download anything: no JDK fetch, no Maven endpoints/repositories."""
    import scyjava.config as sjc

    sjc.set_java_constraints(fetch="never")
    sjc.endpoints.clear()
    try:
        sjc.get_repositories().clear()
    except Exception:  # older scyjava: repositories are only used by endpoints, which are empty
        pass


def jvm_running() -> bool:
    """True once a JVM runs in this process (started by anyone); never imports jpype eagerly."""
    import sys

    jpype = sys.modules.get("jpype")
    return bool(jpype is not None and jpype.isJVMStarted())


def start_jvm(classpath: Sequence[str | os.PathLike], *, headless: bool, max_heap: str | None = None,
              options: Sequence[str] = (), backend: str = "imagej",
              starter: Callable[[], None] | None = None) -> None:
    """Start the process's JVM once with ``classpath`` (explicit jars), offline.

    Parameters
    ----------
    classpath
        Jar files to put on the class path.
    headless
        Add ``-Djava.awt.headless=true``.
    max_heap
        ``-Xmx`` value such as ``"4g"``; None uses ``$ISOAPP_JAVA_XMX`` or Java's default.
    options
        Extra JVM options.
    backend
        Name recorded in :data:`STATE`.
    starter
        Callable that actually starts Java (PyImageJ's ``imagej.init``); default ``scyjava.start_jvm``.

    Raises
    ------
    BridgeError
        When a JVM already runs with incompatible settings (one JVM per process).
    NoBackendError
        When Java cannot be started.
    """
    with _LOCK:
        if jvm_running():
            _check_compatible(classpath, headless, backend)
            return
        import scyjava
        import scyjava.config as sjc

        configure_offline()
        jars = [str(Path(j)) for j in classpath]
        if jars:
            sjc.add_classpath(*jars)
        heap = max_heap or os.environ.get("ISOAPP_JAVA_XMX")
        if heap:
            heap = heap if heap.startswith("-Xmx") else f"-Xmx{heap}"
            sjc.add_option(heap)
        if headless:
            sjc.add_option("-Djava.awt.headless=true")
        for opt in options:
            sjc.add_option(opt)
        log.info("starting Java (%s, headless=%s) with %s", backend, headless, ", ".join(jars) or "Fiji jars")
        try:
            (starter or scyjava.start_jvm)()
        except Exception as exc:
            raise NoBackendError(
                f"could not start Java: {exc}. Install a Java runtime >= 11 (e.g. "
                "'apt-get install default-jre' or Fiji, which bundles one) or set JAVA_HOME"
            ) from exc
        STATE.update(started_by="fiji_bridge", headless=bool(headless), classpath=tuple(jars), backend=backend)
        atexit.register(shutdown)


def _check_compatible(classpath: Sequence[str | os.PathLike], headless: bool, backend: str) -> None:
    import jpype

    running_headless = bool(jpype.JClass("java.awt.GraphicsEnvironment").isHeadless())
    if STATE["started_by"] is None:
        STATE.update(started_by="other", headless=running_headless, backend=backend)
    if not headless and running_headless:
        raise BridgeError(
            "Java already runs headless in this process and cannot be restarted with a display; "
            "restart isoapp (the JVM starts once per process)"
        )
    if STATE["backend"] not in (None, backend) and STATE["started_by"] == "fiji_bridge":
        raise BridgeError(
            f"Java already runs with the {STATE['backend']!r} backend in this process; "
            f"cannot switch to {backend!r} without restarting isoapp"
        )
    try:
        jpype.JClass("ij.IJ")
    except Exception as exc:
        raise BridgeError(
            "Java already runs in this process without ImageJ on its class path; restart isoapp"
        ) from exc


def jclass(name: str) -> Any:
    """Import a Java class lazily (the JVM must be running)."""
    import scyjava

    return scyjava.jimport(name)


def has_class(name: str) -> bool:
    """True when the running JVM can load class ``name`` (without initialising it)."""
    import jpype

    try:
        jpype.JClass("java.lang.Class").forName(name, False, jpype.JClass("ij.IJ").getClassLoader())
        return True
    except Exception:
        try:
            jpype.JClass(name)
            return True
        except Exception:
            return False


def is_headless() -> bool:
    """True when the running JVM is headless (no windows possible)."""
    return bool(jclass("java.awt.GraphicsEnvironment").isHeadless())


def on_edt(fn: Callable[[], Any], timeout: float | None = 60.0) -> Any:
    """Run ``fn`` on the AWT event-dispatch thread, wait for it and return its result.

    AWT window work (show, close, dispose) must happen there; disposing a window from a Python
    thread can deadlock. Exceptions raised by ``fn`` are re-raised in the caller.
    """
    import jpype

    event_queue = jclass("java.awt.EventQueue")
    if event_queue.isDispatchThread():
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()

    @jpype.JImplements("java.lang.Runnable")
    class _Task:
        @jpype.JOverride
        def run(self) -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:  # noqa: B036 - re-raised in the caller
                box["error"] = exc
            finally:
                done.set()

    event_queue.invokeLater(_Task())
    if not done.wait(timeout):
        raise BridgeError(f"the Java window thread did not respond within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def close_all_windows(timeout: float = 20.0) -> None:
    """Stop Orthogonal Views and dispose every AWT window, on the event thread."""
    if not jvm_running() or is_headless():
        return

    def _close() -> None:
        ov = jclass("ij.plugin.Orthogonal_Views")
        if ov.getInstance() is not None:
            ov.stop()
        image_window = jclass("ij.gui.ImageWindow")
        for w in jclass("java.awt.Window").getWindows():
            if isinstance(w, image_window):
                imp = w.getImagePlus()
                if imp is not None:
                    imp.changes = False  # no "save changes?" dialog
                w.close()  # ends the stack window's zSelector thread too
            if w.isDisplayable():
                w.dispose()

    on_edt(_close, timeout=timeout)


def shutdown() -> None:
    """Close windows on the event thread and stop the JVM without waiting for Java threads.

    Registered with :mod:`atexit` when the bridge starts Java (it runs before scyjava's own hook,
    which would dispose windows from the Python thread). Image windows are closed the ImageJ way so
    their threads end; the JVM is then destroyed on a helper thread, and if some plugin thread keeps
    it alive for ``SHUTDOWN_TIMEOUT_S`` the process exits without waiting for it.
    """
    if not jvm_running():
        return
    import jpype

    try:
        close_all_windows()
    except Exception as exc:  # never hang or fail at exit
        log.debug("closing Java windows at exit failed: %s", exc)
    done = threading.Event()

    def _stop() -> None:
        try:
            jpype.shutdownJVM()  # waits for non-daemon Java threads (none are left after closing)
        except Exception as exc:
            log.debug("JVM shutdown: %s", exc)
        finally:
            done.set()

    threading.Thread(target=_stop, name="fiji_bridge-jvm-shutdown", daemon=True).start()
    if not done.wait(SHUTDOWN_TIMEOUT_S):
        log.warning("Java did not stop within %d s (a Java thread is still running); exiting anyway",
                    SHUTDOWN_TIMEOUT_S)
