"""A connection to ImageJ/Fiji running in this process: push/pull images, show, run macros."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isoapp.core.volume import Volume

from .convert import imageplus_to_numpy, numpy_to_imageplus
from .errors import BridgeError, DisplayError, PluginMissingError
from .jvm import has_class, is_headless, jclass, on_edt

log = logging.getLogger(__name__)

SNT_COMMANDS = ("sc.fiji.snt.gui.cmds.SNTLoaderCmd", "tracing.gui.cmds.SNTLoaderCmd")
DL2_CLASSES = ("DeconvolutionLab2_Run", "deconvolutionlab.Lab")


@dataclass
class Comparison:
    """What :meth:`Session.compare_with_deconvolution` did."""

    images: dict[str, Any] = field(default_factory=dict)
    deconvolutionlab2: bool = False
    message: str = ""


class Session:
    """ImageJ (plain ImageJ 1.x jar or the user's Fiji.app) in this process.

    Create with :func:`fiji_bridge.connect`. Usable as a context manager; :meth:`close` closes
    the windows this session opened (the JVM itself lives until the process exits).

    Attributes
    ----------
    backend
        ``"fiji"`` or ``"imagej"``.
    headless
        True when no window can be shown.
    gateway
        The PyImageJ ImageJ2 gateway (Fiji backend) or None.
    """

    def __init__(self, backend: str, *, headless: bool, gateway: Any = None, fiji_dir: Path | None = None,
                 show_via_file: bool = False, opener: Callable[[list[str]], Any] | None = None) -> None:
        self.backend = backend
        self.headless = headless
        self.gateway = gateway
        self.fiji_dir = fiji_dir
        self.show_via_file = show_via_file  # macOS + Fiji: windows come from the Fiji app itself
        self._opener = opener or (lambda cmd: subprocess.run(cmd, check=True))
        self._images: list[Any] = []
        self._last: Any = None
        self._closed = False

    # ------------------------------------------------------------------ basics
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fiji_bridge.Session backend={self.backend!r} headless={self.headless}>"

    @property
    def imagej_version(self) -> str:
        """ImageJ 1.x version of the running JVM (e.g. ``"1.53t"``)."""
        return str(jclass("ij.IJ").getFullVersion())

    def _check_open(self) -> None:
        if self._closed:
            raise BridgeError("this Fiji session is closed; call fiji_bridge.connect() again")

    # ------------------------------------------------------------------ data
    def push(self, volume: Volume | np.ndarray, voxel_size: Sequence[float] | None = None,
             title: str | None = None, show: bool = False, axes: str | None = None) -> Any:
        """Send a volume or array to ImageJ as an ``ImagePlus``.

        Parameters
        ----------
        volume
            A :class:`isoapp.core.volume.Volume` or a numpy array (``ZYX``/``CZYX``/``TCZYX``).
        voxel_size
            ``(z, y, x)`` µm; overrides the volume's (default 1 µm for bare arrays).
        title
            Window title (default: the volume's name).
        show
            Open a window (raises :class:`DisplayError` when headless).
        axes
            Axes of a bare array (default by dimension: 3 -> ZYX, 4 -> CZYX, 5 -> TCZYX).

        Returns
        -------
        ij.ImagePlus
        """
        self._check_open()
        if isinstance(volume, Volume):
            vol = volume.load()
        else:
            arr = np.asarray(volume)
            ax = axes or {3: "ZYX", 4: "CZYX", 5: "TCZYX"}.get(arr.ndim)
            if ax is None:
                raise BridgeError(f"cannot push a {arr.ndim}D array {arr.shape}: a 3D stack (Z, Y, X) is needed")
            vol = Volume(arr, axes=ax, voxel_size=voxel_size or (1.0, 1.0, 1.0), name=title or "isoapp")
        vs = tuple(voxel_size) if voxel_size is not None else vol.voxel_size
        t0 = time.perf_counter()
        imp = numpy_to_imageplus(vol.data, vol.axes, vs, title or vol.name)
        log.debug("pushed %s %s in %.3f s", vol.shape, vol.dtype, time.perf_counter() - t0)
        self._images.append(imp)
        self._last = imp
        if show:
            self.show(imp)
        return imp

    def _resolve(self, image: Any) -> Any:
        wm = jclass("ij.WindowManager")
        if image is None:
            imp = wm.getCurrentImage() or self._last
            if imp is None:
                raise BridgeError("no image is open in ImageJ: open one, or pass the image to pull()")
            return imp
        if isinstance(image, str):
            imp = wm.getImage(image) or next((i for i in self._images if str(i.getTitle()) == image), None)
            if imp is None:
                raise BridgeError(f"no ImageJ image titled {image!r} is open")
            return imp
        if isinstance(image, int):
            imp = wm.getImage(int(image))
            if imp is None:
                raise BridgeError(f"no ImageJ image with ID {image} is open")
            return imp
        return image

    def pull(self, image: Any = None) -> Volume:
        """Copy an ImageJ image into a :class:`~isoapp.core.volume.Volume`.

        ``image`` is an ``ImagePlus``, a title, an image ID, or None for the active image (or
        the last pushed one when no window is active).
        """
        self._check_open()
        imp = self._resolve(image)
        t0 = time.perf_counter()
        data, axes, voxel_size = imageplus_to_numpy(imp)
        log.debug("pulled %s in %.3f s", data.shape, time.perf_counter() - t0)
        cal = imp.getCalibration()
        info = imp.getOriginalFileInfo()
        path = Path(str(info.directory), str(info.fileName)) if info is not None and info.fileName else None
        return Volume(data, axes=axes, voxel_size=voxel_size, path=path, name=str(imp.getTitle()),
                      metadata={"source": f"fiji_bridge:{self.backend}", "imagej_unit": str(cal.getUnit())})

    def open_image(self, path: str | Path) -> Any:
        """Open a file with ImageJ's own reader (``IJ.openImage``)."""
        imp = jclass("ij.IJ").openImage(str(path))
        if imp is None:
            raise BridgeError(f"ImageJ could not open {path}")
        self._images.append(imp)
        self._last = imp
        return imp

    # ------------------------------------------------------------------ windows
    def _require_display(self, what: str) -> None:
        if self.headless or is_headless():
            raise DisplayError(
                f"cannot {what}: Java runs headless (no display). Run isoapp from a desktop session "
                "(on Linux DISPLAY must be set), or save the result and open it in Fiji"
            )

    def show(self, imp: Any) -> None:
        """Show ``imp`` in a window (on the AWT event thread); waits until it is visible."""
        self._check_open()
        if self.show_via_file:
            self._show_via_file(imp)
            return
        self._require_display("show an image")
        on_edt(imp.show)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            win = imp.getWindow()
            if win is not None and win.isShowing() and imp.getCanvas() is not None:
                return
            time.sleep(0.02)
        log.warning("the ImageJ window for %s did not appear within 10 s", imp.getTitle())

    def _show_via_file(self, imp: Any) -> Path:
        """macOS: PyImageJ runs headless there, so save an ImageJ TIFF and open it in Fiji.app."""
        folder = Path(tempfile.mkdtemp(prefix="isoapp-fiji-"))
        stem = Path(str(imp.getTitle()).replace("/", "_")).stem or "isoapp"
        path = folder / f"{stem}.tif"
        if not jclass("ij.IJ").saveAsTiff(imp, str(path)):
            raise BridgeError(f"could not write {path} for Fiji")
        app = str(self.fiji_dir) if self.fiji_dir is not None else "Fiji"
        self._opener(["open", "-a", app, str(path)])
        log.info("opened %s in %s", path, app)
        return path

    def orthogonal_views(self, imp: Any, timeout: float = 10.0) -> Any:
        """Open Image > Stacks > Orthogonal Views on ``imp`` (shown first if needed).

        The command runs from this thread, as an ImageJ macro would (it starts its own thread and
        creates its windows on the event thread). ImageJ 1.x sometimes fails to create the XZ/YZ
        windows (a race in Orthogonal_Views); it is retried up to three times.
        """
        self._require_display("open orthogonal views")
        if imp.getWindow() is None:
            self.show(imp)
        ov = jclass("ij.plugin.Orthogonal_Views")
        ij = jclass("ij.IJ")
        for attempt in range(3):
            on_edt(lambda: jclass("ij.WindowManager").setCurrentWindow(imp.getWindow()))
            ij.run(imp, "Orthogonal Views", "")
            deadline = time.monotonic() + timeout / 3
            while time.monotonic() < deadline:
                inst = ov.getInstance()
                if inst is not None and self._ortho_windows_ready():
                    return inst
                time.sleep(0.05)
            log.info("Orthogonal Views did not open its XZ/YZ windows (attempt %d); retrying", attempt + 1)
            _reset_orthogonal_views()
            time.sleep(0.2)
        raise BridgeError("ImageJ's Orthogonal Views did not open; try Image > Stacks > Orthogonal Views")

    @staticmethod
    def _ortho_windows_ready() -> bool:
        wm = jclass("ij.WindowManager")
        ready = {"XZ": False, "YZ": False}
        for title in [str(t) for t in (wm.getImageTitles() or [])]:
            key = "XZ" if title.startswith("XZ") else "YZ" if title.startswith(("YZ", "ZY")) else None
            imp = wm.getImage(title) if key else None
            win = imp.getWindow() if imp is not None else None
            if key and win is not None and win.isShowing():
                ready[key] = True
        return all(ready.values())

    def close_image(self, imp: Any) -> None:
        """Close ``imp``'s window (on the event thread) and forget it."""
        if imp.getWindow() is not None:
            def _close() -> None:
                imp.changes = False  # no "save changes?" dialog
                imp.close()

            on_edt(_close)
        if imp in self._images:
            self._images.remove(imp)

    # ------------------------------------------------------------------ macros and plugins
    def run_macro(self, code: str, args: str = "") -> str:
        """Run ImageJ macro ``code`` with ``getArgument()`` = ``args``; return its ``return`` value.

        Raises
        ------
        BridgeError
            When the macro fails (the ImageJ error message is included).
        """
        self._check_open()
        wm = jclass("ij.WindowManager")
        if wm.getCurrentImage() is None and self._last is not None:
            wm.setTempCurrentImage(self._last)  # headless: the last pushed image is the active one
        interp = jclass("ij.macro.Interpreter")()
        # Not setIgnoreErrors(True): with it, a macro needing an image when none is open makes
        # ImageJ 1.x call System.exit() (IJ.getImage without an ImageJ window). Without it, an
        # error raises in headless Java (caught below) and shows ImageJ's error dialog otherwise.
        try:
            result = interp.run(str(code), str(args))
        except Exception as exc:
            message = interp.getErrorMessage()
            raise BridgeError(f"ImageJ macro failed: {message or exc}") from exc
        if interp.wasError():
            raise BridgeError(f"ImageJ macro failed: {interp.getErrorMessage()}")
        return "" if result is None else str(result)

    def open_in_snt(self, imp: Any) -> None:
        """Open ``imp`` in SNT (Fiji's neuron tracer).

        Raises
        ------
        PluginMissingError
            When SNT is not installed (plain ImageJ never has it).
        """
        cmd = next((c for c in SNT_COMMANDS if has_class(c)), None)
        if cmd is None or self.gateway is None:
            raise PluginMissingError(
                "SNT is not installed: use your Fiji.app (--fiji-dir or FIJI_DIR) and enable it in "
                "Fiji with Help > Update... > Manage Update Sites > 'Neuroanatomy', then restart Fiji"
                + ("" if self.gateway is not None else " (the plain ImageJ backend cannot run SNT)")
            )
        self._require_display("open SNT")
        if imp.getWindow() is None:
            self.show(imp)
        self.gateway.command().run(cmd, True)

    def compare_with_deconvolution(self, input: Any, rl: Any = None, restored: Any = None, *,
                                   psf: Any = None, iterations: int = 15,
                                   show: bool | None = None) -> Comparison:
        """Push input, Richardson-Lucy and restored stacks and show them side by side.

        When ``rl`` is None and DeconvolutionLab2 is installed, it computes the RL result from
        ``input`` and ``psf``; without DeconvolutionLab2 the message says so.
        """
        show = (not self.headless) if show is None else show
        result = Comparison()
        result.images["input"] = self._as_imp(input, "input")
        has_dl2 = any(has_class(c) for c in DL2_CLASSES)
        if rl is not None:
            result.images["richardson-lucy"] = self._as_imp(rl, "richardson-lucy")
        elif has_dl2 and psf is not None:
            psf_imp = self._as_imp(psf, "psf")
            for imp in (result.images["input"], psf_imp):  # DL2 finds "platform" images by title
                jclass("ij.WindowManager").setTempCurrentImage(imp)
                if not self.headless:
                    self.show(imp)
            jclass("ij.IJ").run("DeconvolutionLab2 Run",
                                f"-image platform input -psf platform psf -algorithm RL {int(iterations)} "
                                "-out stack richardson-lucy -monitor no")
            result.images["richardson-lucy"] = self._resolve("richardson-lucy")
            result.deconvolutionlab2 = True
        if restored is not None:
            result.images["restored"] = self._as_imp(restored, "restored")
        if not has_dl2:
            result.message = ("DeconvolutionLab2 is not installed in this ImageJ, so no Richardson-Lucy "
                              "result was computed (install it from its update site in Fiji)")
        elif rl is None and psf is None:
            result.message = "DeconvolutionLab2 is installed; pass psf= to compute Richardson-Lucy"
        if show:
            for imp in result.images.values():
                if imp.getWindow() is None:
                    self.show(imp)
            jclass("ij.IJ").run("Tile", "")
        if result.message:
            log.info("%s", result.message)
        return result

    def _as_imp(self, item: Any, title: str) -> Any:
        if isinstance(item, (Volume, np.ndarray)):
            return self.push(item, title=title)
        return self._resolve(item)

    # ------------------------------------------------------------------ Bio-Formats
    def read_bioformats(self, path: str | Path, series: int = 0) -> Volume:
        """Read a file with Bio-Formats (the format registry's reader, :mod:`.bioformats`).

        OME physical sizes become the voxel size (µm); channels are kept.
        """
        from isoapp.data.io import read_volume

        self._check_open()
        path = Path(path)
        if not path.is_file():
            raise BridgeError(f"{path} does not exist")
        vol = read_volume(path, format="bioformats", dataset=str(series))
        vol.metadata["source"] = "bioformats"
        return vol

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the windows of images this session pushed or opened (and their Orthogonal Views).

        Other ImageJ windows stay; the JVM lives until the process exits.
        """
        if self._closed:
            return
        self._closed = True
        if not (self.headless or is_headless()):
            try:
                ov = jclass("ij.plugin.Orthogonal_Views")
                if ov.getInstance() is not None and any(ov.isOrthoViewsImage(i) for i in self._images):
                    on_edt(ov.stop)
                for imp in list(self._images):
                    self.close_image(imp)
            except Exception as exc:
                log.warning("closing ImageJ windows failed: %s", exc)
        self._images.clear()
        self._last = None


def _reset_orthogonal_views() -> None:
    """Undo a half-started Orthogonal Views (ImageJ 1.x race): stop it or, if stop() itself fails,
    close its XZ/YZ windows and clear its private static instance so the command can run again."""
    ov = jclass("ij.plugin.Orthogonal_Views")
    inst = ov.getInstance()
    if inst is None:
        return
    try:
        on_edt(ov.stop)
        return
    except Exception as exc:
        log.debug("Orthogonal_Views.stop failed (%s); clearing it by hand", exc)

    def _close() -> None:
        for side in (inst.getXZImage(), inst.getYZImage()):
            win = side.getWindow() if side is not None else None
            if win is not None:
                side.changes = False
                win.close()

    on_edt(_close)
    field = ov.class_.getDeclaredField("instance")
    field.setAccessible(True)
    field.set(None, None)

