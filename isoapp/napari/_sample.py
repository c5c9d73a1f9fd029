"""Sample data for napari: a noisy anisotropic nuclei phantom."""

from __future__ import annotations

from typing import Any


def noisy_nuclei() -> list[tuple[Any, dict, str]]:
    """A nuclei phantom blurred and sampled every 4 lateral pixels along z, with camera noise.

    The layer's scale is the voxel size in µm (z, y, x), from which the widget reads the factor.
    """
    from ..quality.phantoms import make_phantom

    ph = make_phantom("nuclei", (61, 128, 128), factor=4.0, seed=0, noise=True)
    vol = ph.degraded
    return [(vol.data, {"name": "noisy nuclei (z x4)", "scale": tuple(vol.voxel_size),
                        "metadata": {"isoapp_factor": 4.0}}, "image")]
