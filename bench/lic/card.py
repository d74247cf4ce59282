"""codecs/lic/MODEL_CARD.md: what each shipped model is, how it was trained, what it costs.

``write_card`` regenerates the part above the measured-results marker from the weights files
(training metadata with its rounds and their totals, parameter counts, kMAC per pixel counted with
torch's FlopCounterMode) and keeps the measured results below the marker as they are: those come from
`bench run` and `bench bd` on Kodak, on a machine with the codec libraries, and are recorded there with
the commands that made them.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.complexity import kmac_per_pixel
from bench.lic import integer, weights
from bench.lic.round import rounds_of

RESULTS_MARKER = "<!-- measured results: kept as they are when the card is regenerated -->"


def _data(data: dict) -> str:
    if "pack" in data:
        return f"pack {data['pack']} (sha256 {data['sha256'][:16]}, {data['photos']} photographs)"
    return f"folder {data['folder']} ({data['photos']} photographs)"


def rounds_text(training: dict) -> list[str]:
    """The training rounds' totals, then one line per round."""
    rounds = rounds_of(training)
    gpu_s = sum(r["seconds"] for r in rounds if r["device"] != "cpu")
    cpu_s = sum(r["seconds"] for r in rounds if r["device"] == "cpu")
    on_cpu = f" and {cpu_s:.0f} s on a CPU" if cpu_s else ""
    totals = (
        f"- Training rounds: {len(rounds)}, {sum(r['steps'] for r in rounds)} steps in all, "
        f"{gpu_s:.0f} s of GPU time{on_cpu} (wall time of each round, start-up included); "
        "each round starts Adam afresh from the previous round's parameters:"
    )
    lines = [totals]
    for number, entry in enumerate(rounds, 1):
        speed = f" ({entry['steps_per_s']:.1f} steps/s)" if "steps_per_s" in entry else ""
        flags = [flag for flag in ("bf16", "channels_last", "compile") if entry.get(flag)]
        lines.append(
            f"  - round {number}: {entry['steps']} steps in {entry['seconds']:.0f} s on {entry['device']}{speed}, "
            f"lr {entry['lr']:g} ({entry['schedule']}), data {_data(entry['data'])}"
            + (f", {', '.join(flags)}" if flags else "")
        )
    return lines


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
                f"- Last round: {training['steps']} steps, batch {training['batch']} of {training['crop']}x{training['crop']} "
                f"random crops with flips, Adam lr {training['lr']:g} ({training['schedule']} schedule), gradient clip "
                f"{training['clip']:g}, seed {training['seed']}, on {training['device']} in {training['wall_s']:.0f} s of wall time "
                f"(torch {training['torch']}); data: {training['images']} photographs of the `train` set "
                f"({training['val_images']} more held out for validation); never Kodak."
            ),
            *rounds_text(training),
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


def main(argv: list[str]) -> None:
    """``python -m bench.lic.card [DIR]``: regenerate DIR/MODEL_CARD.md (default codecs/lic)."""
    print(write_card(Path(argv[0]) if argv else weights.WEIGHTS_DIR))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
