"""codec-bench: learned and traditional image codecs under one honest protocol."""

from __future__ import annotations

import warnings

# compressai 1.2.8 calls torch.jit.script at import, which newer torch versions flag as deprecated.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"


def run(*args, **kwargs):
    """Run a benchmark and return its rows as a pandas DataFrame (see ``bench.runner.run``)."""
    from bench.runner import run as _run

    return _run(*args, **kwargs)
