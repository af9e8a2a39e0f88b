"""User errors: bad data, bad configuration values, missing files, reported as one line instead of a traceback.

A traceback says "lit_align is broken, here is where"; for a malformed JSONL line or a model path that does
not exist it only hides the one sentence that matters. So code that checks what the user gave raises
`UserError` (a ValueError, so `except ValueError` keeps working) with a message naming the file, line and
field, and the command line (`lit-align ...`, through `run_reporting_user_errors`) prints

    lit-align: error: data/pairs.jsonl: line 7: invalid UTF-8 (byte 0xff at column 12); expected UTF-8 text

on stderr and exits with status 2. A FileNotFoundError counts too (a path given on the command line or in a
config, wherever it is opened). Every other exception is a bug and keeps its traceback. `--debug` on the
command line or LIT_ALIGN_DEBUG=1 in the environment shows the traceback of user errors too. Libraries may
wrap what they call (jsonargparse instantiates the data module and model inside `raise ... from error`), so
the chain of causes is searched.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_FLAG = "--debug"
DEBUG_ENV = "LIT_ALIGN_DEBUG"
EXIT_CODE = 2  # argparse's status for a usage error


class UserError(ValueError):
    """A problem with the data, configuration or files the user gave, not with lit_align."""


class MissingFileError(UserError, FileNotFoundError):
    """An input file or folder that does not exist (also a FileNotFoundError)."""


def find_user_error(error: BaseException | None) -> BaseException | None:
    """`error` itself or the user error it was raised from (a library may wrap it: `raise X from user_error`)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (UserError, FileNotFoundError)):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


def debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_reporting_user_errors(fn: Callable[[list[str]], object], argv: list[str], prog: str = "lit-align") -> None:
    """Call fn(argv without --debug); a UserError becomes one line on stderr and exit status 2 (unless debugging)."""
    debug = debug_requested(argv)
    try:
        fn([a for a in argv if a != DEBUG_FLAG])
    except Exception as error:  # noqa: BLE001 - re-raised unless it is (or wraps) a user error
        user_error = None if debug else find_user_error(error)
        if user_error is None:
            raise
        print(f"{prog}: error: {user_error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CODE) from None
