"""The image size a bitstream's header claims, read without decoding, and the check against the expected one.

Decoders allocate what a header claims; a header from someone else's run directory may claim anything.
``check_size`` compares the claim with the (height, width) the caller expects before any decoding.
Only the standard library here: bench.lic imports it too.
"""

from __future__ import annotations


class HeaderError(ValueError):
    """A header that cannot be read, or that claims another image size than the expected one."""


def check_size(
    what: str, claimed: tuple[int, int], expected: tuple[int, int], error: type[Exception] = HeaderError
) -> None:
    """Raise ``error`` when ``claimed`` (height, width) is not ``expected``; messages say width x height."""
    height, width = (int(v) for v in claimed)
    want_height, want_width = (int(v) for v in expected)
    if (height, width) != (want_height, want_width):
        raise error(f"{what} claims {width}x{height}, expected {want_width}x{want_height}")
