"""Settings shared by the progress bars of long loops (tqdm on stderr)."""

from __future__ import annotations

BAR_DELAY_S = 0.5
"""Seconds before a bar appears, for loops whose first steps can meet a bad input (a label
missing, no matching rows, a calculator refusing the structure): an error found at once stays
a single line on stderr, and a long loop still shows its bar after half a second."""


def delayed_bar(iterable, desc: str, unit: str, enabled: bool):
    """A tqdm bar on stderr over `iterable` that appears after :data:`BAR_DELAY_S` and leaves
    nothing behind when done."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, disable=not enabled, leave=False, delay=BAR_DELAY_S)


def stage(enabled: bool, text: str) -> None:
    """One line on stderr as a long stage without steps to count starts, if `enabled`."""
    if enabled:
        import sys

        print(text, file=sys.stderr, flush=True)
