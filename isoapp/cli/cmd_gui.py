"""``isoapp gui [FILE]``: open the desktop app."""

from __future__ import annotations

import argparse

from ..data.io import registry


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the desktop app",
                              description="Open the isoapp desktop app (needs PySide6: pip install 'isoapp[gui]').")
    p.add_argument("file", nargs="?", help="a stack to open: " + registry.input_help())
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import ConfigError

    try:
        import PySide6  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the desktop app needs PySide6 ({exc}); install it with pip install 'isoapp[gui]'") \
            from exc
    from ..gui import run_app

    return run_app(args.file, debug=getattr(args, "debug", False))
