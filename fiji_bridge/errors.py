"""Errors raised by the Fiji bridge; all are :class:`isoapp.core.errors.IsoappError` subclasses."""

from __future__ import annotations

from isoapp.core.errors import IsoappError


class BridgeError(IsoappError):
    """The Fiji/ImageJ bridge cannot do what was asked; the message says how to fix it."""


class NoBackendError(BridgeError):
    """No Java, no ImageJ jar and no Fiji.app: nothing to connect to."""


class DisplayError(BridgeError):
    """A window was asked for but the JVM runs headless (no display)."""


class PluginMissingError(BridgeError):
    """A Fiji plugin (SNT, DeconvolutionLab2, Bio-Formats) is not installed."""
