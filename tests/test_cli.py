import argparse

import pytest

from mammalnet.cli import non_negative_float, non_negative_int, positive_float, positive_int


@pytest.mark.parametrize("parse, good, bad, message", [
    (positive_int, ("1", 1), "0", "must be >= 1"),
    (positive_float, ("0.5", 0.5), "0", "must be positive"),
    (non_negative_int, ("0", 0), "-1", "must be >= 0"),
    (non_negative_float, ("0", 0.0), "-0.5", "must be >= 0"),
])
def test_bounds_and_argparse_messages(parse, good, bad, message, capsys):
    assert parse(good[0]) == good[1]
    with pytest.raises(argparse.ArgumentTypeError, match=f"{message}. Received: {bad}"):
        parse(bad)
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=parse)
    with pytest.raises(SystemExit):
        parser.parse_args(["--n", "x"])
    assert f"invalid {parse.__name__} value: 'x'" in capsys.readouterr().err
