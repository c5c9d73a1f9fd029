"""isoapp's bridge to ImageJ / Fiji (PyImageJ, scyjava, JPype). Imports no torch and no Qt.

Java is started lazily by :func:`connect` (once per process) and never downloads anything.

>>> import fiji_bridge
>>> with fiji_bridge.connect() as ij:            # doctest: +SKIP
...     imp = ij.push(volume, show=True)
...     vol = ij.pull()
"""

from __future__ import annotations

from .backends import BACKENDS, available_backends, connect, doctor, format_doctor
from .errors import BridgeError, DisplayError, NoBackendError, PluginMissingError
from .locate import find_bioformats_jar, find_fiji, find_ij_jar, find_java, has_display
from .session import Comparison, Session

__all__ = [
    "BACKENDS", "BridgeError", "Comparison", "DisplayError", "NoBackendError", "PluginMissingError",
    "Session", "available_backends", "connect", "doctor", "find_bioformats_jar", "find_fiji",
    "find_ij_jar", "find_java", "format_doctor", "has_display", "imageplus_to_numpy",
    "numpy_to_imageplus",
]


def __getattr__(name: str):
    # the converters need a running JVM; import them on first use
    if name in ("numpy_to_imageplus", "imageplus_to_numpy"):
        from . import convert

        return getattr(convert, name)
    raise AttributeError(f"module 'fiji_bridge' has no attribute {name!r}")
