"""Inference weights: one file per architecture in codecs/lic/, fp16 parameters plus coding tables.

The file is a ``torch.save`` dict: ``config`` (architecture, n, m, levels), ``lambdas``,
``distortion``, ``training`` (what produced it) and ``state_dict`` (parameters in fp16; buffers, such
as the likelihood bounds and the entropy coders' integer CDF tables, as they are). The tables are
computed from the fp16-rounded parameters before saving, and decoding uses them as shipped: it never
calls ``update()``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from bench.lic.model import GainedModel, build

WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "codecs" / "lic"


def default_path(architecture: str) -> Path:
    return WEIGHTS_DIR / f"{architecture}.pt"


def _rounded(model: GainedModel) -> dict[str, torch.Tensor]:
    """The state with the parameters in fp16; buffers (bounds, scale table, coding tables) as they are."""
    parameters = {name for name, _ in model.named_parameters()}
    return {k: v.half() if k in parameters else v for k, v in model.state_dict().items()}


def _as_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def export(
    model: GainedModel, path: Path, lambdas: list[float], distortion: str, training: dict[str, Any]
) -> str:
    """Round the parameters to fp16, rebuild the coding tables from them, save; return the sha256."""
    model = model.cpu().eval()
    model.load_state_dict(_as_float32(_rounded(model)))
    model.update(force=True)
    payload = {
        "config": model.config(),
        "lambdas": list(lambdas),
        "distortion": distortion,
        "training": training,
        "state_dict": _rounded(model),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path, device: str = "cpu") -> tuple[GainedModel, dict[str, Any], str]:
    """The model ready to code (tables as shipped), the file's metadata and its sha256."""
    raw = path.read_bytes()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = payload["config"]
    model = build(config["architecture"], config["n"], config["m"], config["levels"])
    model.load_state_dict(_as_float32(payload["state_dict"]))
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(device).eval(), meta, hashlib.sha256(raw).hexdigest()
