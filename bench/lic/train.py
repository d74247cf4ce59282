"""`bench train lic`: train a variable-rate lic model end to end for rate + lambda x distortion.

Rate is the entropy model's estimate in bits per pixel (additive uniform noise stands in for rounding
during training); distortion is MSE (default), L1 or MS-SSIM. Each sample of a batch draws its own
rate level, and so its own lambda, from the ladder. ``--data`` is a folder of photographs (the last
--val-images held out for validation) or a training pack (bench.lic.pack; its held-out photographs are
not in it, so there is no validation); either way the photographs are held on the training device and
each batch's crops drawn there (bench.lic.crops). ``--bf16``, ``--channels-last`` and ``--compile``
speed training up on a GPU (scripts/lic-train-speed.py measures them). Each run is a round: it ends by
writing its master (bench.lic.round) beside log.csv, and the rounds of its ``--init`` weights carry over.
Imports only torch, compressai, numpy and Pillow (tqdm when present), so it runs on a GPU machine
without the codec libraries: ``python -m bench.lic.train --help``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.lic import card, pack, weights
from bench.lic.crops import DeviceCrops
from bench.lic.model import MSE_LADDER, GainedModel, build
from bench.lic.round import rounds_of, write_master

# Lambdas per distortion: MSE as CompressAI (lambda x 255^2 x MSE); MS-SSIM as CompressAI's
# ms-ssim models (lambda x (1 - MS-SSIM)); L1 (lambda x 255 x mean |error|) scaled by 16 from the MSE
# ladder, a heuristic that lands near the MSE ladder's rates.
LADDERS = {
    "mse": MSE_LADDER,
    "l1": tuple(16 * v for v in MSE_LADDER),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00),
}


@dataclass
class TrainConfig:
    architecture: str = "hyperprior"
    n: int = 128
    m: int = 192
    distortion: str = "mse"
    lambdas: tuple[float, ...] = MSE_LADDER
    steps: int = 10000
    batch: int = 16
    crop: int = 256
    lr: float = 1e-4
    schedule: str = "cosine"  # cosine (to lr / 10) | constant | step (lr / 10 for the last 10 %)
    warmup: int = 0  # steps of linear ramp up to lr first (a round starts Adam afresh)
    clip: float = 1.0
    device: str = "auto"
    threads: int = 1
    seed: int = 0
    data: str = ""
    val_images: int = 3
    val_every: int = 1000
    checkpoint_every: int = 1000
    out: str = "reports/lic-train"
    resume: bool = False
    export: bool = False
    weights_dir: str = str(weights.WEIGHTS_DIR)
    init: str = ""  # start from these weights (exported, or a round's master), not from random
    time_budget: float = 0.0  # seconds; when set, --steps is cut to what fits, measured on steps 20-120
    bf16: bool = False  # the transforms under bfloat16 autocast; rates and loss stay float32
    channels_last: bool = False
    compile: bool = False  # torch.compile the model's forward (eager, said in one line, where it fails)


def load_photos(paths: list[Path]) -> list[np.ndarray]:
    """Each photograph as an H x W x 3 uint8 array."""
    photos = []
    for path in paths:
        with Image.open(path) as image:
            photos.append(np.array(image.convert("RGB")))
    return photos


@dataclass
class TrainingData:
    """What a run trains on: the crops, the validation photographs, and how a round records the data."""

    crops: DeviceCrops
    validation: list[np.ndarray]
    calibration: list[Path]  # the held-out photographs that calibrate an export
    record: dict[str, Any]  # pack (name, sha256, held out) or folder (name); photographs trained on
    held_out: int


def training_data(config: TrainConfig, device: torch.device) -> TrainingData:
    """The photographs of ``config.data`` (a pack or a folder), on ``device``."""
    source = Path(config.data)
    if source.is_file():
        photos, manifest = pack.read_pack(source)
        held = [photo["name"] for photo in manifest["held_out"]]
        record = {
            "pack": source.name,
            "sha256": weights.file_sha256(source),
            "photos": len(photos),
            "held_out": held,
        }
        return TrainingData(DeviceCrops(photos, config.crop, device), [], [], record, len(held))
    paths = weights.find_images(source)
    if len(paths) <= config.val_images:
        raise SystemExit(
            f"bench train lic: {len(paths)} images in {config.data}; need more than --val-images"
        )
    held = paths[-config.val_images :]
    record = {"folder": source.name, "photos": len(paths) - len(held)}
    crops = DeviceCrops(load_photos(paths[: -config.val_images]), config.crop, device)
    return TrainingData(crops, load_photos(held), held, record, len(held))


def rate_bpp(likelihoods: dict[str, torch.Tensor], pixels: int) -> torch.Tensor:
    """Bits per pixel of each sample from the entropy models' likelihoods."""
    bits = sum(torch.log(l).flatten(1).sum(1) for l in likelihoods.values())
    return bits / (-math.log(2) * pixels)


def distortion_terms(x: torch.Tensor, x_hat: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample distortion (in the lambda's units) and per-sample MSE (for PSNR)."""
    mse = F.mse_loss(x_hat, x, reduction="none").flatten(1).mean(1)
    if kind == "mse":
        return 255**2 * mse, mse
    if kind == "l1":
        return 255 * (x_hat - x).abs().flatten(1).mean(1), mse
    from pytorch_msssim import ms_ssim

    return 1 - ms_ssim(x_hat, x, data_range=1.0, size_average=False), mse


def learning_rate(config: TrainConfig, step: int) -> float:
    ramp = min(1.0, (step + 1) / config.warmup) if config.warmup else 1.0
    if config.schedule == "constant":
        return ramp * config.lr
    if config.schedule == "step":
        return ramp * (config.lr / 10 if step >= 0.9 * config.steps else config.lr)
    return ramp * config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / config.steps)))


def optimizers(model: GainedModel, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=1e-3)


@torch.no_grad()
def validate(model: GainedModel, images: list[np.ndarray], config: TrainConfig) -> list[dict]:
    """Estimated bpp and PSNR (rounded latents) of each level on the held-out images."""
    model.eval()
    device = next(model.parameters()).device
    batches = [torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255 for image in images]
    rows = []
    for level in range(len(config.lambdas)):
        bpp, psnr = [], []
        for x in batches:
            height, width = x.shape[2:]
            out = model(model.pad(x), torch.tensor([level], device=x.device))
            x_hat = out["x_hat"][:, :, :height, :width].clamp(0, 1)
            bpp.append(float(rate_bpp(out["likelihoods"], height * width)))
            psnr.append(float(-10 * torch.log10(F.mse_loss(x_hat, x))))
        rows.append({"level": level, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))})
    model.train()
    return rows


def _progress(total: int, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", desc="train lic", file=sys.stderr, mininterval=2)


def device_for(name: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; any other name as it is."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def fast_kernels() -> None:
    """TF32 matmuls and convolutions, and cuDNN's own choice of kernels (one batch shape throughout):
    for training only; lic's coding turns TF32 off."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's), so that a clock read after it times that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


Forward = Callable[[torch.Tensor, torch.Tensor], dict]


def run_forward(forward: Forward, x: torch.Tensor, level: torch.Tensor, bf16: bool) -> dict:
    """The forward pass, under bfloat16 autocast with ``bf16`` (the entropy models keep float32: model.py)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        return forward(x, level)


def training_forward(
    model: GainedModel, config: TrainConfig, x: torch.Tensor, level: torch.Tensor
) -> Forward:
    """The forward that training calls: the model itself, or with ``config.compile`` its torch.compile'd
    forward, compiled here by one forward and backward pass on ``x`` (gradients then cleared). Where
    compiling fails, the model itself, said in one line."""
    if not config.compile:
        return model
    compiled = torch.compile(model)
    try:
        result = run_forward(compiled, x, level, config.bf16)
        likelihoods = sum(values.float().mean() for values in result["likelihoods"].values())
        (result["x_hat"].float().mean() + likelihoods).backward()
    except Exception as error:  # noqa: BLE001 - any failure of the compiler stack: train eagerly instead
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        print(
            f"--compile: torch.compile failed ({type(error).__name__}: {reason}); training without it",
            file=sys.stderr,
        )
        return model
    finally:
        model.zero_grad(set_to_none=True)
    return compiled


@dataclass
class StepResult:
    loss: torch.Tensor
    bpp: torch.Tensor  # per sample
    mse: torch.Tensor  # per sample
    aux: torch.Tensor


def train_step(
    forward: Forward,
    model: GainedModel,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    x: torch.Tensor,
    level: torch.Tensor,
    lambdas: torch.Tensor,
    config: TrainConfig,
    lr: float,
) -> StepResult:
    """One step on the batch ``x`` at rate levels ``level``: rate + lambda x distortion, both float32,
    clipped Adam at ``lr``; then the entropy bottleneck's auxiliary step (its quantiles)."""
    optimizer, aux_optimizer = optimizers
    for group in optimizer.param_groups:
        group["lr"] = lr
    result = run_forward(forward, x, level, config.bf16)
    bpp = rate_bpp(result["likelihoods"], x.shape[2] * x.shape[3])
    distortion, mse = distortion_terms(x, result["x_hat"].float(), config.distortion)
    loss = (bpp + lambdas[level] * distortion).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
    optimizer.step()
    aux_loss = model.aux_loss()
    aux_optimizer.zero_grad(set_to_none=True)
    aux_loss.backward()
    aux_optimizer.step()
    return StepResult(loss.detach(), bpp.detach(), mse.detach(), aux_loss.detach())


def train(config: TrainConfig) -> GainedModel:
    """Train (or resume) and checkpoint; write the round's master; export the inference weights when
    ``config.export``."""
    if config.export:  # refuse an unwritable destination, or nothing to calibrate on, now, not after training
        weights.writable(Path(config.weights_dir), "bench train lic", "say where with --weights-dir DIR")
        if Path(config.data).is_file():
            raise SystemExit(
                "bench train lic: a pack holds no held-out photographs to calibrate an export on: "
                "export the round with `python -m bench.lic.round assemble`"
            )
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    device = device_for(config.device)
    fast_kernels()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    data = training_data(config, device)
    model = build(config.architecture, config.n, config.m, len(config.lambdas))
    earlier_rounds, init = [], None
    if config.init:
        initial, meta, sha = weights.load(Path(config.init), exact=False)
        model.load_state_dict(initial.state_dict())
        earlier_rounds = rounds_of(meta["training"])
        init = {"file": Path(config.init).name, "sha256": sha[:16]}
    layout = memory_format(config)
    model = model.to(device, memory_format=layout).train()
    optimizer, aux_optimizer = optimizers(model, config.lr)
    lambdas = torch.tensor(config.lambdas, device=device)
    start_step, elapsed = 0, 0.0
    checkpoint = out / "checkpoint.pt"
    if config.resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        aux_optimizer.load_state_dict(state["aux_optimizer"])
        start_step, elapsed = state["step"], state["elapsed"]
    generator = data.crops.generator(config.seed * 1000003 + start_step)
    log_path = out / "log.csv"
    new_log = not (config.resume and log_path.exists())
    log = log_path.open("w" if new_log else "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "kind", "level", "loss", "bpp", "psnr", "aux", "lr", "elapsed_s"])
    began = time.perf_counter() - elapsed

    def save(step: int) -> None:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "aux_optimizer": aux_optimizer.state_dict(),
                "step": step,
                "elapsed": time.perf_counter() - began,
                "config": asdict(config),
            },
            checkpoint,
        )

    probe = torch.rand(config.batch, 3, config.crop, config.crop, device=device).contiguous(
        memory_format=layout
    )
    forward = training_forward(
        model, config, probe, torch.arange(config.batch, device=device) % len(config.lambdas)
    )
    bar = _progress(config.steps, start_step)
    loop_began = time.perf_counter()
    timed_from, step = 0.0, start_step
    while step < config.steps:
        x = data.crops.batch(config.batch, generator, layout)
        level = torch.randint(len(config.lambdas), (config.batch,), device=device)
        result = train_step(
            forward, model, (optimizer, aux_optimizer), x, level, lambdas, config, learning_rate(config, step)
        )
        step = done = step + 1
        if done % 50 == 0 or done == config.steps:
            psnr = float(-10 * torch.log10(result.mse.mean()))
            values = {"loss": result.loss.item(), "bpp": result.bpp.mean().item(), "psnr": psnr}
            writer.writerow(
                [
                    done,
                    "train",
                    "",
                    *(f"{v:.5f}" for v in values.values()),
                    f"{result.aux.item():.3f}",
                    f"{learning_rate(config, done - 1):.3g}",
                    f"{time.perf_counter() - began:.1f}",
                ]
            )
            log.flush()
            if bar is not None:
                bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
            else:
                print(
                    f"step {done}/{config.steps} " + " ".join(f"{k} {v:.3f}" for k, v in values.items()),
                    file=sys.stderr,
                    flush=True,
                )
        if bar is not None:
            bar.update(1)
        if config.time_budget and done == 20:
            sync(device)
            timed_from = time.perf_counter()
        if config.time_budget and done == 120:
            sync(device)
            rate = 100 / (time.perf_counter() - timed_from)
            remaining = config.time_budget - (time.perf_counter() - began)
            config.steps = min(config.steps, done + int(remaining * rate))
            if bar is not None:
                bar.total = config.steps
            print(f"{rate:.1f} steps/s: training {config.steps} steps in the time budget", file=sys.stderr)
        if data.validation and (done % config.val_every == 0 or done == config.steps):
            for row in validate(model, data.validation, config):
                writer.writerow(
                    [
                        done,
                        "val",
                        row["level"],
                        "",
                        f"{row['bpp']:.5f}",
                        f"{row['psnr']:.3f}",
                        "",
                        "",
                        f"{time.perf_counter() - began:.1f}",
                    ]
                )
            log.flush()
        if done % config.checkpoint_every == 0 or done == config.steps:
            save(done)
    sync(device)
    if bar is not None:
        bar.close()
    log.close()
    loop_s, wall_s = time.perf_counter() - loop_began, time.perf_counter() - began
    this_round = {
        "steps": step,
        "seconds": round(wall_s, 1),
        "steps_per_s": round((step - start_step) / loop_s, 2) if loop_s > 0 else 0.0,
        "device": device_name(device),
        "torch": str(torch.__version__),
        "data": data.record,
        "lr": config.lr,
        "schedule": config.schedule,
        "warmup": config.warmup,
        "batch": config.batch,
        "crop": config.crop,
        "seed": config.seed,
        "bf16": config.bf16,
        "channels_last": config.channels_last,
        "compile": forward is not model,
        "init": init,
    }
    training = asdict(config) | {
        "lambdas": list(config.lambdas),
        "images": data.record["photos"],
        "val_images": data.held_out,
        "wall_s": round(wall_s, 1),
        "device": device_name(device),
        "torch": str(torch.__version__),
        "parameters": sum(p.numel() for p in model.parameters()),
        "rounds": [*earlier_rounds, this_round],
    }
    record = {
        "config": model.config(),
        "lambdas": list(config.lambdas),
        "distortion": config.distortion,
        "training": training,
    }
    print(f"round master: {write_master(model, out, record)}", file=sys.stderr)
    if config.export:
        export(model, config, data.calibration, training)
    return model


def export(
    model: GainedModel, config: TrainConfig, calibration: list[Path], training: dict[str, Any]
) -> Path:
    """Write the inference weights to <weights dir>/<architecture>.pt (fp16, coding tables updated),
    calibrated on the ``calibration`` photographs."""
    path = Path(config.weights_dir) / f"{config.architecture}.pt"
    images = weights.calibration_images(calibration)
    digest = weights.export(model, path, list(config.lambdas), config.distortion, training, images)
    print(f"exported {path} (sha256 {digest[:16]})", file=sys.stderr)
    print(f"model card: {card.write_card(path.parent)}", file=sys.stderr)
    return path


def parse_args(argv: list[str] | None = None, prog: str = "bench train lic") -> TrainConfig:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", choices=("factorized", "hyperprior"), default=defaults.architecture)
    parser.add_argument(
        "--channels",
        nargs=2,
        type=int,
        metavar=("N", "M"),
        default=(defaults.n, defaults.m),
        help="transform channels N and latent channels M (default 128 192)",
    )
    parser.add_argument("--distortion", choices=tuple(LADDERS), default=defaults.distortion)
    parser.add_argument(
        "--lambdas",
        type=lambda s: tuple(float(v) for v in s.split(",")),
        help="comma-separated rate ladder (default: the distortion's 8-rate ladder)",
    )
    for name in ("steps", "batch", "crop", "threads", "seed", "val_images", "val_every", "checkpoint_every"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--schedule", choices=("cosine", "constant", "step"), default=defaults.schedule)
    parser.add_argument(
        "--warmup", type=int, default=defaults.warmup, help="steps of linear ramp up to --lr (default 0)"
    )
    parser.add_argument("--clip", type=float, default=defaults.clip, help="gradient norm clipping")
    parser.add_argument(
        "--device", default=defaults.device, help="auto (CUDA when present), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument(
        "--data",
        help="folder of training photographs, or a training pack (.zip, scripts/pack-lic-train.py) "
        "(default: <data dir>/train; never Kodak)",
    )
    parser.add_argument("--out", default=defaults.out, help="checkpoints, log.csv and the round's master")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument(
        "--init",
        default="",
        metavar="WEIGHTS",
        help="start from exported weights, or from a round's assembled master or fp16 init file (.pt)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="cut --steps to what fits in this many seconds (speed measured on steps 20-120)",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="transforms under bfloat16 autocast (rates stay float32)"
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="the model and batches in channels-last layout"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model's forward for training"
    )
    parser.add_argument("--export", action="store_true", help="write the inference weights when done")
    parser.add_argument(
        "--weights-dir",
        default=defaults.weights_dir,
        help="where --export writes [default: the repository's codecs/lic/; required when bench is installed]",
    )
    args = vars(parser.parse_args(argv))
    args["n"], args["m"] = args.pop("channels")
    args["lambdas"] = args["lambdas"] or LADDERS[args["distortion"]]
    if not args["data"]:
        data_dir = os.environ.get("BENCH_DATA_DIR") or Path.home() / ".cache" / "codec-bench" / "datasets"
        args["data"] = str(Path(data_dir) / "train")
    if pack.is_kodak(Path(args["data"])):
        parser.error("Kodak is the test set: never train on it")
    return TrainConfig(**args)


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
