"""Names as printed: a file name, codec name or note from a user's data never writes a terminal escape
sequence or forges a line of output."""

from __future__ import annotations

import os


def quoted(name: object) -> str:
    """``name`` as it is when every character is printable and it has no surrounding space, else
    quoted with escapes (``'a\\nnote: b.png'``)."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    if text and text.isprintable() and text == text.strip():
        return text
    return repr(text)


def one_line(text: str) -> str:
    """``text`` with every control character (newline, ESC, ...) escaped: one line of output."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
