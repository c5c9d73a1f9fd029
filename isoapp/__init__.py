"""isoapp: self-supervised isotropic restoration of anisotropic 3D fluorescence stacks.

The core (this package minus ``isoapp.gui``) imports no Qt and no Java.
"""

from .errors import IsoappError
from .volume import Volume

__version__ = "0.1.0"
__all__ = ["IsoappError", "Volume", "__version__"]
