"""codecs/lic/MODEL_CARD.md: what each shipped model is, how it was trained, what it costs.

``write_card`` regenerates the part above the measured-results marker from the weights files
(training metadata, parameter counts, kMAC per pixel counted with torch's FlopCounterMode) and keeps
the measured results below the marker as they are: those come from `bench run` and `bench bd` on
Kodak, on a machine with the codec libraries, and are recorded there with the commands that made them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.lic import integer, weights
from bench.lic.model import GainedModel

RESULTS_MARKER = "<!-- measured results: kept as they are when the card is regenerated -->"
COUNT_SHAPE = (512, 768)  # a Kodak image, landscape


def _macs(function, *args) -> float:
    """Multiply-accumulates of a call: FLOPs of convolutions and matrix products / 2."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        function(*args)
    return counter.get_total_flops() / 2


def kmac_per_pixel(model: GainedModel) -> tuple[float, float]:
    """Encoder and decoder kMAC per pixel on a 768 x 512 input (entropy coding not counted)."""
    height, width = COUNT_SHAPE
    x = torch.zeros(1, 3, height, width)
    y = model.g_a(x)
    pixels = height * width
    if hasattr(model, "h_a"):
        z = model.h_a(y)
        encoder = _macs(model.g_a, x) + _macs(model.h_a, y) + _macs(model.h_s, z)
        decoder = _macs(model.h_s, z) + _macs(model.g_s, y)
    else:
        encoder, decoder = _macs(model.g_a, x), _macs(model.g_s, y)
    return encoder / pixels / 1e3, decoder / pixels / 1e3


def _section(path: Path) -> str:
    model, meta, sha = weights.load(path)
    training = meta["training"]
    encoder, decoder = kmac_per_pixel(model)
    parameters = {
        part: sum(p.numel() for p in getattr(model, part).parameters())
        for part in ("g_a", "g_s", "h_a", "h_s", "entropy_bottleneck")
        if hasattr(model, part)
    }
    parameters["rate gains"] = model.log_gain.numel() + model.log_inverse_gain.numel()
    lambdas = ", ".join(f"{v:g}" for v in meta["lambdas"])
    program = [part for part in ("h_s", "g_s") if part in model.program]
    bound = integer.accumulator_bound(model.program)
    return "\n".join(
        [
            f"## {meta['config']['architecture']} (`{path.name}`, sha256 {sha[:16]}, {path.stat().st_size / 2**20:.1f} MiB)",
            "",
            (
                f"- Architecture: {meta['config']['architecture']}, N={meta['config']['n']}, M={meta['config']['m']}, "
                f"{meta['config']['levels']} rates from one set of weights (learned per-rate gains on the latent)."
            ),
            f"- Distortion {meta['distortion']}; lambdas (quality index 0 to {len(meta['lambdas']) - 1}): {lambdas}.",
            (
                f"- Trained {training['steps']} steps, batch {training['batch']} of {training['crop']}x{training['crop']} "
                f"random crops with flips, Adam lr {training['lr']:g} ({training['schedule']} schedule), gradient clip "
                f"{training['clip']:g}, seed {training['seed']}, on {training['device']} in {training['wall_s']:.0f} s of wall time "
                f"(torch {training['torch']}); data: {training['images']} photographs of the `train` set "
                f"({training['val_images']} more held out for validation); never Kodak."
            ),
            f"- Parameters: {sum(parameters.values()):,} ("
            + ", ".join(f"{k} {v:,}" for k, v in parameters.items())
            + "), stored in fp16.",
            (
                f"- Complexity on 768x512: encoder {encoder:.1f} kMAC/px, decoder {decoder:.1f} kMAC/px "
                "(convolutions incl. GDN's, counted with torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2; "
                "entropy coding not counted)."
            ),
            (
                f"- Decoder side as an exact integer program ({', '.join(program)}; bench/lic/integer.py): 16-bit weights "
                "with a power-of-two exponent per output channel, 16-bit saturating activations, rounding after every "
                f"layer, evaluated in float64; largest accumulator bound 2^{math.log2(bound):.1f} < 2^53, so every "
                "machine decodes the same pixels. Activation ranges calibrated on the held-out training photographs."
            ),
            "",
        ]
    )


def write_card(directory: Path = weights.WEIGHTS_DIR) -> Path:
    """Regenerate MODEL_CARD.md in ``directory`` from the weights there; keep the measured results."""
    card = directory / "MODEL_CARD.md"
    existing = card.read_text() if card.exists() else ""
    kept = (
        existing.split(RESULTS_MARKER, 1)[1]
        if RESULTS_MARKER in existing
        else (
            "\n\n## Measured results\n\nNot measured yet: run `bench run --codecs jpeg,lic,lic-factorized --dataset "
            "kodak` and `bench bd RUN --anchor jpeg`, and record them here.\n"
        )
    )
    sections = [_section(path) for path in sorted(directory.glob("*.pt"))]
    head = "\n".join(
        [
            "# lic model card",
            "",
            (
                "lic is codec-bench's own learned image codec (bench/lic): analysis and synthesis transforms with GDN, "
                "additive uniform noise for quantisation in training, learned entropy models and compressai's range "
                "coder in the real bitstream. This part is generated by `bench train lic --export` from the weights."
            ),
            "",
            *sections,
        ]
    )
    card.write_text(head + RESULTS_MARKER + kept)
    return card
