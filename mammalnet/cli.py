"""argparse value types shared by the command-line tools (predict, explain, compare)."""

from __future__ import annotations

import argparse


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

__all__ = ["non_negative_float", "non_negative_int", "positive_float", "positive_int"]
