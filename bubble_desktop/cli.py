"""bubble-cli: the same core as the desktop app, headless.

Subcommands live in ``bubble_desktop/commands/<name>.py``; each module has
``register(subparsers)`` and sets ``func(args) -> int`` on its parser. Nothing heavy is imported
here, so ``bubble-cli --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bubble_desktop import APP_NAME, __version__

COMMAND_MODULES = ("ask", "models", "kb", "chats", "serve", "train")

log = logging.getLogger("bubble_desktop.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bubble-cli",
        description=f"{APP_NAME} on the command line: index your files, search them, ask questions.",
    )
    parser.add_argument("--version", action="version", version=f"bubble-cli {__version__}")
    parser.add_argument(
        "--home",
        metavar="DIR",
        help="keep config, data, models, cache and logs under DIR (same as BUBBLE_HOME)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"bubble_desktop.commands.{name}")
        module.register(sub)
    return parser


def _fail(message: str, hint: str = "") -> int:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 1 if not hint else 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.home:
        os.environ["BUBBLE_HOME"] = os.path.abspath(os.path.expanduser(args.home))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0

    from bubble_desktop.core.errors import UserFacingError
    from bubble_desktop.core.logs import setup_logging
    from bubble_desktop.core.paths import Paths

    paths = Paths.default()
    try:
        setup_logging(paths.log_dir)
    except OSError:
        pass  # logging is best effort on the CLI
    try:
        return int(args.func(args) or 0)
    except UserFacingError as exc:
        log.info("user-facing error: %s", exc)
        return _fail(exc.message, exc.hint)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the CLI's thread boundary: one line, no traceback, details in the log
        log.exception("unexpected error")
        return _fail(f"{type(exc).__name__}: {exc}", f"Details are in {paths.log_dir / 'bubble.log'}.")


if __name__ == "__main__":
    sys.exit(main())
