"""Tell a damaged file from a bug: was an exception raised inside a reader library or in isoapp?

Readers of damaged files fail with all sorts of built-in exceptions (tifffile alone raises
ValueError, KeyError, IndexError, TypeError, RuntimeError, AssertionError or struct.error on
corrupt headers). Catching them by type would also blame the user's file for isoapp's own
bugs, so the readers ask where the exception was raised: in library code (tifffile, zarr,
numcodecs, numpy...) it is the file's fault and becomes an InputError; in isoapp's own code it
is a bug and propagates as an internal error.
"""

from __future__ import annotations

from pathlib import Path

_ISOAPP = str(Path(__file__).resolve().parents[1])


def raised_by_library(exc: BaseException) -> bool:
    """True when the innermost Python frame of ``exc``'s traceback is outside the isoapp package."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = str(Path(tb.tb_frame.f_code.co_filename).resolve())
    return not filename.startswith(_ISOAPP)
