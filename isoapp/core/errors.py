"""User-facing errors.

Every exception that reaches a user (CLI, GUI dialog) because of *their* input is an
:class:`IsoappError`. Its message says what was wrong and what to do about it; the CLI
prints it as one line and exits with code 2, the GUI shows it in a dialog.
"""

from __future__ import annotations


class IsoappError(Exception):
    """An error caused by user input or environment, with an actionable message."""


class InputError(IsoappError):
    """The input file or array cannot be used (unreadable, corrupt, wrong shape, NaN/Inf...)."""


class OutputError(IsoappError):
    """The output cannot be written where asked (equals the input, not writable...)."""


class ConfigError(IsoappError):
    """A parameter or option is out of range or inconsistent."""


class ModelError(IsoappError):
    """A saved model is missing, corrupt or incompatible with the data."""


class Cancelled(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside long-running work when ``should_stop()`` returned True."""
