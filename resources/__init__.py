"""Package data shipped with isoapp (importable as ``isoapp.resources``)."""
