"""Hand images to an ImageJ or Fiji that runs as its own program, with its toolbar and menus.

ImageJ 1.x (and Fiji, which embeds it) runs a single-instance listener: launching ImageJ again
hands the new command line (``-eval`` macro code, file names) to the instance already running on
this display and exits (``ij.OtherInstance``; on by default, Edit > Options > Misc > "Run single
instance listener"). :class:`Handoff` uses exactly that, so

* a Fiji or ImageJ the user already runs receives the image, and it stays there after isoapp quits;
* otherwise the launch starts ImageJ (Fiji when one is found) as a separate process, detached from
  isoapp (its own session), with its main window;
* every image is a calibrated TIFF written once per result in a per-user folder, and the macro
  selects the window already showing it instead of opening it again, so there are no duplicates;
* a stack too large to copy is opened from its own file as a virtual stack (:meth:`Handoff.show_file`):
  a classic TIFF by ImageJ itself, a BigTIFF/OME-TIFF or other microscope file by Bio-Formats, an
  OME-Zarr by Fiji's N5 plugin (n5-ij). Plain ImageJ gets Bio-Formats from the jar the installer
  extracts (``-Dplugins.dir``); it cannot read OME-Zarr.

No JVM runs inside isoapp for this; imports no torch and no Qt.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import locate
from .errors import NoBackendError, PluginMissingError

log = logging.getLogger(__name__)

FIJI_LAUNCHERS = ("fiji-linux-x64", "ImageJ-linux64", "fiji-windows-x64.exe", "ImageJ-win64.exe",
                  "Contents/MacOS/fiji-macos", "Contents/MacOS/ImageJ-macosx", "fiji", "ImageJ")
#: plugins some actions need, as file-name prefixes in Fiji.app/jars or Fiji.app/plugins
PLUGIN_JARS = {"SNT": ("SNT-", "SNT_", "snt-"), "DeconvolutionLab2": ("DeconvolutionLab_2", "DeconvolutionLab2"),
               "Bio-Formats": ("bio-formats_plugins", "bioformats_package"), "N5": ("n5-ij",)}
#: the Fiji command of n5-ij that opens HDF5/N5/Zarr/OME-NGFF (note its trailing space)
N5_COMMAND = "HDF5/N5/Zarr/OME-NGFF ... "


def handoff_dir() -> Path:
    """The per-user folder for the TIFFs handed to ImageJ (they must outlive isoapp)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "isoapp" / "fiji"


def macro_string(text: str) -> str:
    """``text`` as an ImageJ macro string literal."""
    return '"' + str(text).replace("\\", "/").replace('"', '\\"') + '"'


@dataclass
class Launcher:
    """The command that starts ImageJ's main class (``ij.ImageJ``) as a program."""

    argv: list[str]
    kind: str  # "fiji" or "imagej"
    fiji_dir: Path | None = None
    plugins_home: Path | None = None  # plain ImageJ: its -Dplugins.dir (a ``plugins`` folder inside)

    def has_plugin(self, name: str) -> bool:
        """Whether this Fiji (or plain ImageJ's plugins folder) has the plugin ``name`` (a key of :data:`PLUGIN_JARS`)."""
        home = self.fiji_dir or self.plugins_home
        if home is None:
            return False
        prefixes = PLUGIN_JARS[name]
        for sub in ("jars", "plugins"):
            folder = home / sub
            if folder.is_dir() and any(p.name.startswith(prefixes) for p in folder.rglob("*.jar")):
                return True
        return False


def find_launcher(fiji_dir: str | os.PathLike | None = None) -> Launcher:
    """Fiji's launcher when a Fiji.app is found, else ``java -jar ij.jar``.

    Raises
    ------
    NoBackendError
        Neither Fiji nor Java with an ImageJ jar is installed.
    """
    fiji = locate.find_fiji(fiji_dir)
    if fiji is not None:
        for name in FIJI_LAUNCHERS:
            exe = fiji / name
            if exe.is_file() and os.access(exe, os.X_OK):
                return Launcher([str(exe)], "fiji", fiji)
        log.warning("no launcher found in %s; starting its ImageJ jar with Java instead", fiji)
    jar = locate.find_ij_jar(fiji)
    java = locate.find_java(fiji)
    if jar is None or java is None:
        raise NoBackendError("no ImageJ or Fiji to send images to: install Fiji (https://fiji.sc) and set its "
                             "folder (FIJI_DIR), or install Java and ImageJ (apt-get install default-jre libij-java)")
    if fiji is not None:
        return Launcher([str(java), "-jar", str(jar)], "fiji", fiji)
    home = bioformats_plugins_home()
    argv = [str(java), *([f"-Dplugins.dir={home}"] if home else []), "-jar", str(jar)]
    return Launcher(argv, "imagej", None, home)


def bioformats_plugins_home() -> Path | None:
    """A plugins home for plain ImageJ whose ``plugins`` folder holds the installer's Bio-Formats jar.

    With it, plain ImageJ has File > Import > Bio-Formats, which opens BigTIFF and OME-TIFF files
    (ImageJ 1.x reads classic TIFF only) as virtual stacks. None when the jar is not installed.
    """
    jar = locate.find_bioformats_jar()
    if jar is None:
        return None
    home = handoff_dir().parent / "imagej"
    link = home / "plugins" / jar.name
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            try:
                link.symlink_to(jar)
            except OSError:  # no symlinks (Windows without the privilege): a copy
                shutil.copyfile(jar, link)
    except OSError as exc:
        log.warning("cannot give plain ImageJ Bio-Formats (%s); it will open classic TIFFs only", exc)
        return None
    return home


def file_kind(path: str | os.PathLike) -> str:
    """How ImageJ opens ``path`` in place: ``"tiff"`` (a classic TIFF: ImageJ itself), ``"n5"`` (an
    OME-Zarr or N5 folder, or an HDF5 file: Fiji's n5-ij) or ``"bioformats"`` (BigTIFF, OME-TIFF over
    4 GB, the other microscope formats)."""
    p = Path(path)
    if p.is_dir():
        markers = (".zattrs", "zarr.json", "attributes.json")
        return "n5" if any((p / m).is_file() for m in markers) else "bioformats"
    if p.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        return "n5"
    if p.suffix.lower() in (".tif", ".tiff"):
        with open(p, "rb") as f:
            head = f.read(4)
        if head in (b"II*\0", b"MM\0*"):  # BigTIFF has 43 ("+") here
            return "tiff"
    return "bioformats"


def zarr_dataset(path: Path) -> str:
    """The full-resolution array of an OME-Zarr: the first dataset of its multiscales (default ``0``)."""
    import json

    for name in (".zattrs", "zarr.json"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", {}).get("ome", attrs) if name == "zarr.json" else attrs
        try:
            return str(attrs["multiscales"][0]["datasets"][0]["path"])
        except (KeyError, IndexError, TypeError):
            pass
    return "0"


@dataclass
class Handoff:
    """Send images to a separate, lasting ImageJ/Fiji (see the module docstring).

    Parameters
    ----------
    launcher
        From :func:`find_launcher`.
    folder
        Where the TIFFs go (default :func:`handoff_dir`).
    popen
        Starts a process (tests pass a recorder where no display exists).
    """

    launcher: Launcher
    folder: Path = field(default_factory=handoff_dir)
    popen: Callable[..., subprocess.Popen] = subprocess.Popen
    processes: list[subprocess.Popen] = field(default_factory=list)
    sent: dict[str, Path] = field(default_factory=dict)  # key -> the file shown for it

    def file_for(self, key: str, name: str) -> tuple[Path, bool]:
        """The TIFF for result ``key`` and whether it still has to be written."""
        path = self.sent.get(key)
        if path is not None and path.exists():
            return path, False
        self.folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "image"
        path = self.folder / f"{safe}_{key[:8]}.tif"
        self.sent[key] = path
        return path, not path.exists()

    def show(self, path: str | os.PathLike, extra_macro: str = "") -> subprocess.Popen:
        """Show ``path`` in ImageJ: select its window if open, else open it; then run ``extra_macro``."""
        title = Path(path).name
        code = (f"if (isOpen({macro_string(title)})) selectWindow({macro_string(title)}); "
                f"else open({macro_string(Path(path).resolve())}); {extra_macro}")
        return self.launch(["-eval", code])

    def show_virtual(self, path: str | os.PathLike, extra_macro: str = "") -> subprocess.Popen:
        """Open a TIFF larger than memory as an ImageJ virtual stack (planes read as they are shown)."""
        return self.show_file(path, extra_macro)

    def show_file(self, path: str | os.PathLike, extra_macro: str = "", levels: tuple[float, float] | None = None,
                  dataset: str | None = None) -> subprocess.Popen:
        """Open a stack too large to copy from its own file, as a virtual stack titled with the file's name.

        A second call selects that window. ``levels`` sets the display range (ImageJ otherwise takes it
        from the first plane); ``dataset`` is the array inside an HDF5 file or N5 folder (an OME-Zarr's
        comes from its metadata). Raises :class:`PluginMissingError`, launching nothing, when this
        ImageJ cannot read the file (OME-Zarr, N5 and HDF5 need Fiji's n5-ij; BigTIFF needs Bio-Formats).
        """
        p = Path(path).resolve()
        title = macro_string(p.name)
        kind = file_kind(p)
        if kind == "n5":
            self.require("N5", f"Opening {p.name} in ImageJ")
            inner = zarr_dataset(p) if p.is_dir() and not (p / "attributes.json").is_file() else (dataset or "")
            url = macro_string(f"{p}/{inner.strip('/')}" if inner.strip("/") else p)
            opener = f'run("{N5_COMMAND}", "url=[" + {url} + "] virtual"); rename({title});'
        elif kind == "tiff":
            opener = f'run("TIFF Virtual Stack...", "open=[" + {macro_string(p)} + "]");'
        else:
            self.require("Bio-Formats", f"Opening {p.name} in ImageJ")
            opener = (f'run("Bio-Formats Importer", "open=[" + {macro_string(p)} + "] color_mode=Default '
                      f'view=Hyperstack stack_order=XYCZT use_virtual_stack"); rename({title});')
        if levels is not None:
            opener += f" if (bitDepth() != 8) setMinAndMax({float(levels[0])!r}, {float(levels[1])!r});"
        code = f"if (isOpen({title})) selectWindow({title}); else {{ {opener} }} {extra_macro}"
        return self.launch(["-eval", code])

    def launch(self, args: Sequence[str]) -> subprocess.Popen:
        """Run the launcher with ``args``, detached: it outlives isoapp.

        While an ImageJ this hand-off started is still coming up, wait for its single-instance
        listener first: launched earlier, the next command would start a second ImageJ.
        """
        self.wait_ready()
        argv = [*self.launcher.argv, *args]
        log.info("handing to %s: %s", self.launcher.kind, " ".join(argv[-2:]))
        kwargs: dict = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                        "cwd": str(self.folder if self.folder.is_dir() else Path.home()), "close_fds": True}
        if sys.platform.startswith("win"):
            kwargs["creationflags"] = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # not killed with isoapp's process group
        proc = self.popen(argv, **kwargs)
        self.processes.append(proc)
        return proc

    def require(self, plugin: str, action: str) -> None:
        """Raise before anything is sent when ``action`` needs a plugin this Fiji lacks."""
        if not self.launcher.has_plugin(plugin):
            where = (f"your Fiji ({self.launcher.fiji_dir})" if self.launcher.fiji_dir else
                     "plain ImageJ (no Fiji.app found; set its folder in the settings)")
            hint = {"SNT": "in Fiji: Help > Update... > Manage Update Sites > 'Neuroanatomy', then restart Fiji",
                    "DeconvolutionLab2": "in Fiji: Help > Update... > Manage Update Sites > 'DeconvolutionLab2'",
                    "N5": "(it comes with Fiji: install Fiji from https://fiji.sc and set its folder in the settings), "
                          "or restore into a .ome.tif instead",
                    "Bio-Formats": "(it comes with Fiji; for plain ImageJ run installer/install.sh, which extracts "
                                   "bioformats_package.jar), or restore into a classic .tif"}
            raise PluginMissingError(f"{action} needs {plugin}, which {where} does not have; nothing was sent. "
                                     f"Install it {hint.get(plugin, '')}".rstrip())

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the listener of an ImageJ started here is up (its stub file exists)."""
        stub = stub_path()
        starting = [p for p in self.processes if p.poll() is None]
        if stub is None or not starting or stub.exists():
            return True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if stub.exists() or all(p.poll() is not None for p in starting):
                return stub.exists()
            time.sleep(0.1)
        log.warning("ImageJ's single-instance listener did not come up within %.0f s", timeout)
        return False

    def started_new(self, proc: subprocess.Popen, wait: float = 3.0) -> bool:
        """True when ``proc`` became a new ImageJ (still running), False when it handed over and exited."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if proc.poll() is not None:
                return False
            time.sleep(0.05)
        return True


def stub_path(port: int = 57294) -> Path | None:
    """Where ImageJ 1.x's single-instance listener leaves its RMI stub (``ij.OtherInstance``).

    ``{java.io.tmpdir}/ImageJ-{user}-{DISPLAY with ':' and '/' as '_'}-{port}.stub``; None where
    the name is not known (Windows, macOS).
    """
    if sys.platform.startswith(("win", "darwin")):
        return None
    import getpass

    display = os.environ.get("DISPLAY")
    disp = "" if display is None else display.replace(":", "_").replace("/", "_") + "-"
    return Path("/tmp") / f"ImageJ-{getpass.getuser()}-{disp}{port}.stub"  # Java's default java.io.tmpdir


def which_display() -> str | None:
    """The X display ImageJ windows go to (None on Windows/macOS, or headless Linux)."""
    if sys.platform.startswith(("win", "darwin")):
        return "native"
    return os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")


def java_available() -> bool:
    return shutil.which("java") is not None or locate.find_java() is not None
