"""What the command-line tools share: argparse value types and the -q / -v logging flags.

Standard library only: the buoy runtime imports it.
"""

from __future__ import annotations

import argparse
import logging
import sys


def _bounded(name: str, convert, minimum, inclusive: bool, wording: str):
    """A type for argparse: `convert(text)` (argparse reports "invalid <name> value" when that fails),
    then the bound (reported as "must be <wording>")."""

    def parse(text):
        value = convert(text)
        if not (value >= minimum if inclusive else value > minimum):
            raise argparse.ArgumentTypeError(f"must be {wording}. Received: {text}")
        return value

    parse.__name__ = name
    return parse


positive_int = _bounded("positive_int", int, 1, True, ">= 1")
positive_float = _bounded("positive_float", float, 0.0, False, "positive")
non_negative_int = _bounded("non_negative_int", int, 0, True, ">= 0")
non_negative_float = _bounded("non_negative_float", float, 0.0, True, ">= 0")



def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds -q/--quiet (warnings and errors only) and -v/--verbose (debug messages too)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_const", const=logging.WARNING, dest="log_level",
                       help="print warnings and errors only")
    group.add_argument("-v", "--verbose", action="store_const", const=logging.DEBUG, dest="log_level",
                       help="print debug messages too")
    parser.set_defaults(log_level=logging.INFO)


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever sys.stderr is when a message is emitted (tests swap it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(level: int = logging.INFO, stream=None) -> None:
    """Sends mammalnet's log messages to stderr (or `stream`) as plain lines, at `level` and above.

    Only the `mammalnet` logger is configured: other libraries' loggers keep their own settings.
    Calling it again replaces the handler, so a CLI's main() may be called more than once in a process.
    """
    logger = logging.getLogger("mammalnet")
    for handler in [h for h in logger.handlers if getattr(h, "_mammalnet_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._mammalnet_cli = True
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


__all__ = ["add_verbosity_arguments", "non_negative_float", "non_negative_int", "positive_float", "positive_int",
           "setup_logging"]
