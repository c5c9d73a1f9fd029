"""isoapp: self-supervised isotropic restoration of anisotropic 3D fluorescence stacks.

The front door::

    from isoapp import Restorer, read_volume, write_volume

The core (this package minus ``isoapp.gui``) imports no Qt and no Java. The layers, from the
bottom (each imports only from those below it; docs/ARCHITECTURE.md draws them):
``core`` → ``data`` → ``physics`` → ``quality`` → ``training`` → ``methods`` → ``interop`` →
``run`` → ``workflows`` → ``cli`` / ``gui`` / ``napari``. The names below are imported lazily,
so ``import isoapp.core.errors`` stays light.
"""

from __future__ import annotations

from typing import Any

from .core.errors import IsoappError
from .core.volume import Volume

__version__ = "0.1.0"

_LAZY = {
    "Restorer": "isoapp.run.restorer",
    "restore": "isoapp.run.restore",
    "RestoreResult": "isoapp.run.restore",
    "read_volume": "isoapp.data.io",
    "write_volume": "isoapp.data.io",
    "available_methods": "isoapp.methods",
}
__all__ = ["IsoappError", "Volume", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'isoapp' has no attribute {name!r}")
