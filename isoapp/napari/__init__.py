"""napari plugin (npe2): the isotropic-restoration dock widget and a sample phantom.

Imports napari's own Qt binding through qtpy and never :mod:`isoapp.gui`, which pins PySide6.
Everything heavy is imported by the manifest's commands, not here.
"""
