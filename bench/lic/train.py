"""`bench train lic`: train a variable-rate lic model end to end for rate + lambda x distortion.

Rate is the entropy model's estimate in bits per pixel (additive uniform noise stands in for rounding
during training); distortion is MSE (default), L1 or MS-SSIM. Each sample of a batch draws its own
rate level, and so its own lambda, from the ladder. Imports only torch, compressai, numpy and Pillow
(tqdm when present), so it runs on a GPU machine without the codec libraries:
``python -m bench.lic.train --help``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.lic import card, weights
from bench.lic.model import MSE_LADDER, GainedModel, build

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
    init: str = ""  # start from these exported weights (training further), not from random
    time_budget: float = 0.0  # seconds; when set, --steps is cut to what fits, measured on steps 20-120


def load_images(paths: list[Path], device: torch.device) -> list[torch.Tensor]:
    """Each image as a 3 x H x W uint8 tensor on ``device`` (held there for the whole run)."""
    images = []
    for path in paths:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        images.append(torch.from_numpy(array.copy()).permute(2, 0, 1).to(device))
    return images


def random_batch(images: list[torch.Tensor], batch: int, crop: int, generator: random.Random) -> torch.Tensor:
    """Random crops with random horizontal and vertical flips, as B x 3 x crop x crop floats in [0, 1]."""
    crops = []
    for _ in range(batch):
        image = images[generator.randrange(len(images))]
        height, width = image.shape[1:]
        top, left = generator.randint(0, max(0, height - crop)), generator.randint(0, max(0, width - crop))
        patch = image[:, top : top + crop, left : left + crop]
        if patch.shape[1:] != (crop, crop):  # an image smaller than the crop: pad by reflection
            patch = F.pad(
                patch[None].float(), (0, crop - patch.shape[2], 0, crop - patch.shape[1]), mode="replicate"
            )[0]
        if generator.random() < 0.5:
            patch = patch.flip(2)
        if generator.random() < 0.5:
            patch = patch.flip(1)
        crops.append(patch)
    return torch.stack(crops).float() / 255


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
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr / 10 if step >= 0.9 * config.steps else config.lr
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / config.steps)))


def optimizers(model: GainedModel, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=1e-3)


@torch.no_grad()
def validate(model: GainedModel, images: list[torch.Tensor], config: TrainConfig) -> list[dict]:
    """Estimated bpp and PSNR (rounded latents) of each level on the held-out images."""
    model.eval()
    rows = []
    for level in range(len(config.lambdas)):
        bpp, psnr = [], []
        for image in images:
            x = image[None].float() / 255
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


def train(config: TrainConfig) -> GainedModel:
    """Train (or resume) and checkpoint; export the inference weights when ``config.export``."""
    if config.export:  # refuse an unwritable destination now, not after training
        weights.writable(Path(config.weights_dir), "bench train lic", "say where with --weights-dir DIR")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    device = torch.device(
        "cuda"
        if config.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if config.device == "auto"
        else config.device
    )
    torch.backends.cuda.matmul.allow_tf32 = True  # training only; lic's coding turns TF32 off
    torch.backends.cudnn.allow_tf32 = True
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = weights.find_images(Path(config.data))
    if len(paths) <= config.val_images:
        raise SystemExit(
            f"bench train lic: {len(paths)} images in {config.data}; need more than --val-images"
        )
    train_images = load_images(paths[: -config.val_images], device)
    val_images = load_images(paths[-config.val_images :], device)
    model = build(config.architecture, config.n, config.m, len(config.lambdas))
    if config.init:
        model.load_state_dict(weights.load(Path(config.init), exact=False)[0].state_dict())
    model = model.to(device).train()
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
    generator = random.Random(config.seed * 1000003 + start_step)
    log_path = out / "log.csv"
    new_log = not (config.resume and log_path.exists())
    log = log_path.open("w" if new_log else "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "kind", "level", "loss", "bpp", "psnr", "aux", "lr", "elapsed_s"])
    bar = _progress(config.steps, start_step)
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

    timed_from, step = 0.0, start_step
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        x = random_batch(train_images, config.batch, config.crop, generator)
        level = torch.randint(len(config.lambdas), (config.batch,), device=device)
        result = model(x, level)
        bpp = rate_bpp(result["likelihoods"], config.crop * config.crop)
        distortion, mse = distortion_terms(x, result["x_hat"], config.distortion)
        loss = (bpp + lambdas[level] * distortion).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        aux_loss = model.aux_loss()
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_optimizer.step()
        step = done = step + 1
        if done % 50 == 0 or done == config.steps:
            psnr = float(-10 * torch.log10(mse.detach().mean()))
            values = {"loss": loss.item(), "bpp": bpp.mean().item(), "psnr": psnr}
            writer.writerow(
                [
                    done,
                    "train",
                    "",
                    *(f"{v:.5f}" for v in values.values()),
                    f"{aux_loss.item():.3f}",
                    f"{learning_rate(config, done - 1):.3g}",
                    f"{time.perf_counter() - began:.1f}",
                ]
            )
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
            timed_from = time.perf_counter()
        if config.time_budget and done == 120:
            rate = 100 / (time.perf_counter() - timed_from)
            remaining = config.time_budget - (time.perf_counter() - began)
            config.steps = min(config.steps, done + int(remaining * rate))
            if bar is not None:
                bar.total = config.steps
            print(f"{rate:.1f} steps/s: training {config.steps} steps in the time budget", file=sys.stderr)
        if done % config.val_every == 0 or done == config.steps:
            for row in validate(model, val_images, config):
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
    if bar is not None:
        bar.close()
    log.close()
    if config.export:
        export(model, config, paths, time.perf_counter() - began, device)
    return model


def export(
    model: GainedModel, config: TrainConfig, paths: list[Path], wall_s: float, device: torch.device
) -> Path:
    """Write the inference weights to <weights dir>/<architecture>.pt (fp16, coding tables updated)."""
    path = Path(config.weights_dir) / f"{config.architecture}.pt"
    training = asdict(config) | {
        "lambdas": list(config.lambdas),
        "images": len(paths) - config.val_images,
        "wall_s": round(wall_s, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": str(torch.__version__),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    calibration = weights.calibration_images(paths[-config.val_images :])
    digest = weights.export(model, path, list(config.lambdas), config.distortion, training, calibration)
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
    parser.add_argument("--clip", type=float, default=defaults.clip, help="gradient norm clipping")
    parser.add_argument(
        "--device", default=defaults.device, help="auto (CUDA when present), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument(
        "--data", help="folder of training photographs (default: <data dir>/train; never Kodak)"
    )
    parser.add_argument("--out", default=defaults.out, help="checkpoints and log.csv")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--init", default="", metavar="WEIGHTS", help="start from exported weights (.pt)")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="cut --steps to what fits in this many seconds (speed measured on steps 20-120)",
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
    if Path(args["data"]).resolve().name == "kodak":
        parser.error("Kodak is the test set: never train on it")
    return TrainConfig(**args)


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
