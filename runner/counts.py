"""Counts as people write them: 2.63M parameters, --max-macs 500k.

`format_count` writes a count in three figures with a k, M or G suffix; `parse_count`
reads one back; `positive_int` is the argparse type of a plain count of at least 1 (`runner`'s
and `separate`'s). Standard library only, so argument parsing needs no torch.
"""

import argparse

COUNT_SUFFIXES = {"G": 10**9, "M": 10**6, "k": 10**3}  # how counts are written: 2.63M, 500k


def format_count(count: float) -> str:
    """A count in three figures with a k, M or G suffix (2625536 -> '2.63M'), as --max-macs takes it."""
    rounded = float(f"{count:.3g}")  # first, so 999999 is '1M', not '1e+03k'
    for suffix, scale in COUNT_SUFFIXES.items():
        if rounded >= scale:
            return f"{rounded / scale:g}{suffix}"
    return f"{rounded:g}"


def parse_count(text: str) -> int:
    """The count a plain number or one with a k, M or G suffix stands for ('1.5M' -> 1500000);
    ValueError or OverflowError for anything else (nan and inf included)."""
    scale = COUNT_SUFFIXES.get(text[-1:], 1)
    return round(float(text[:-1] if scale > 1 else text) * scale)


def positive_int(text: str) -> int:
    """argparse's type for a whole number of at least 1, with a one-line error for anything else."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value
