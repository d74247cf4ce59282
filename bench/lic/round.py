"""A training round's end state, small enough to come back from a GPU machine, and its reassembly.

A round (`bench train lic`, one run from ``--init`` weights) writes to its ``--out`` folder, beside
log.csv, the master of its end state: ``master-0.pt``, ``master-1.pt``, ... (``torch.save`` of plain
tensors, the model's fp32 parameters and its buffers, each file under PART_LIMIT bytes and loadable with
``weights_only=True``) and ``round.json``: the model's config, lambdas, distortion, the training
metadata with every round so far (``training["rounds"]``: the --init weights' rounds and this one's),
and each part's size and sha256. Adam's state is not kept: each round starts it afresh (a re-warm).

``python -m bench.lic.round assemble DIR --out candidate.pt --data TRAIN_FOLDER`` rebuilds the model
from the parts (their sha256 checked) and exports it with bench.lic.weights.export (fp16, coding tables
and the integer program, calibrated on the held-out photographs of TRAIN_FOLDER); ``--master FILE``
also writes it whole in fp32, ``--init-out FILE`` as fp16 parameters without the integer program
(small enough to carry to the next round). ``--init`` of the next round takes any of the three.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from bench.lic import pack, weights
from bench.lic.model import GainedModel, build

PART_LIMIT = 15 * 2**20  # bytes per master part: a GPU machine returns files under 16 MiB
PART_MARGIN = 2**18  # room in a part for torch.save's own records
RECORD = "round.json"
CODING_TABLES = ("._quantized_cdf", "._offset", "._cdf_length")  # the entropy coders' integer tables


def rounds_of(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The rounds that made a model: its ``rounds`` list, or for weights made before rounds were
    recorded, one round read from their training metadata."""
    if "rounds" in training:
        return list(training["rounds"])
    if not training:
        return []
    return [
        {
            "steps": training["steps"],
            "seconds": training["wall_s"],
            "device": training["device"],
            "torch": training["torch"],
            "data": {"folder": Path(training["data"]).name, "photos": training["images"]},
            "lr": training["lr"],
            "schedule": training["schedule"],
        }
    ]


def split_state(state: dict[str, torch.Tensor], limit: int = PART_LIMIT) -> list[dict[str, torch.Tensor]]:
    """The state in parts of whole tensors, in order, each part's tensors under ``limit - PART_MARGIN`` bytes."""
    budget = limit - PART_MARGIN
    parts: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for name, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if size > budget:
            raise ValueError(f"{name} alone is {size} bytes, over a master part's {budget}")
        if used + size > budget:
            parts.append({})
            used = 0
        parts[-1][name] = tensor
        used += size
    return parts


def write_master(model: GainedModel, folder: Path, record: dict[str, Any], limit: int = PART_LIMIT) -> Path:
    """Write the model's fp32 state in parts and ``record`` (with the parts listed) as round.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("master-*.pt"):
        stale.unlink()
    state = {
        k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    files = []
    for index, part in enumerate(split_state(state, limit)):
        path = folder / f"master-{index}.pt"
        torch.save(part, path)
        if path.stat().st_size >= limit:
            raise ValueError(f"{path} is {path.stat().st_size} bytes, over the part limit {limit}")
        files.append({"file": path.name, "bytes": path.stat().st_size, "sha256": weights.file_sha256(path)})
    path = folder / RECORD
    path.write_text(json.dumps(record | {"parts": files}, indent=1) + "\n")
    return path


def read_master(folder: Path) -> tuple[GainedModel, dict[str, Any]]:
    """The model rebuilt from a round's parts (each checked against its sha256) and its round.json."""
    record = json.loads((folder / RECORD).read_text())
    state: dict[str, torch.Tensor] = {}
    for part in record["parts"]:
        if Path(part["file"]).name != part["file"]:
            raise SystemExit(f"{folder / RECORD}: part {part['file']!r} is not a file of {folder}")
        path = folder / part["file"]
        if weights.file_sha256(path) != part["sha256"]:
            raise SystemExit(f"{path}: sha256 differs from {RECORD}'s: an incomplete or altered part")
        state |= torch.load(path, map_location="cpu", weights_only=True)
    config = record["config"]
    model = build(config["architecture"], config["n"], config["m"], config["levels"])
    model.load_state_dict(state)
    return model.eval(), record


def save_for_training(model: GainedModel, record: dict[str, Any], path: Path, half: bool) -> str:
    """Weights that ``--init`` reads but the codec cannot (no integer program): the whole state in fp32,
    or, with ``half``, the parameters in fp16 and the coding tables left empty (about half the size:
    training never reads the tables, and an export rebuilds them); the file's sha256."""
    state = model.state_dict()
    if half:
        state = {
            name: torch.empty(0, dtype=values.dtype) if name.endswith(CODING_TABLES) else values
            for name, values in weights.rounded_state(model).items()
        }
    payload = {k: record[k] for k in ("config", "lambdas", "distortion", "training")} | {"state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return weights.file_sha256(path)


def held_out_photos(meta: dict[str, Any], data: Path, held_out: int = pack.HELD_OUT) -> list[Path]:
    """The held-out photographs of ``data``; refused if the last round of ``meta`` (a round.json or
    weights' metadata) trained on a pack that held out others."""
    _, held = pack.split(data, held_out)
    rounds = rounds_of(meta["training"])
    expected = rounds[-1]["data"].get("held_out") if rounds else None
    if expected is not None and expected != [p.name for p in held]:
        raise SystemExit(
            f"{data}: held out {[p.name for p in held]}, but the round's pack held out {expected}"
        )
    return held


def assemble(
    folder: Path,
    out: Path,
    data: Path,
    held_out: int = pack.HELD_OUT,
    master: Path | None = None,
    init_out: Path | None = None,
) -> dict[Path, str]:
    """Export a round's master as codec weights calibrated on the held-out photographs, and write the
    asked-for ``--init`` files (fp32 ``master``, fp16 ``init_out``) first; each written file's sha256."""
    model, record = read_master(folder)
    calibration = weights.calibration_images(held_out_photos(record, data, held_out))
    written = {
        path: save_for_training(model, record, path, half)
        for path, half in ((master, False), (init_out, True))
        if path is not None
    }
    training = record["training"]
    written[out] = weights.export(model, out, record["lambdas"], record["distortion"], training, calibration)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lic.round", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("assemble", help="export a round's master parts as candidate weights")
    command.add_argument("folder", type=Path, help="the round's folder: round.json and master-*.pt")
    command.add_argument("--out", type=Path, required=True, help="candidate weights to write (.pt)")
    command.add_argument("--data", type=Path, required=True, help="the training photographs (never Kodak)")
    command.add_argument("--held-out", type=int, default=pack.HELD_OUT, help="the last N photographs")
    command.add_argument("--master", type=Path, help="also write the whole fp32 state here (for --init)")
    command.add_argument(
        "--init-out", type=Path, help="also write fp16 parameters here (for --init, to carry)"
    )
    args = parser.parse_args(argv)
    written = assemble(args.folder, args.out, args.data, args.held_out, args.master, args.init_out)
    for path, digest in written.items():
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB, sha256 {digest[:16]}")
    rounds = json.loads((args.folder / RECORD).read_text())["training"]["rounds"]
    print(f"{len(rounds)} rounds, {sum(r['steps'] for r in rounds)} steps in all")


if __name__ == "__main__":
    main()
