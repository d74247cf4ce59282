"""lic's GPU training rounds, prepared on the CPU: the training pack, crops drawn on the device, the
speed flags, the round's master and its reassembly, rounds in the metadata and the card, the shipping
decision (issue 21). Tiny models and small crops of the training photographs keep each test fast."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.lic import card, pack, weights
from bench.lic import round as rounds
from bench.lic.crops import DeviceCrops
from bench.lic.model import build
from bench.lic.train import main as train_main
from bench.lic.train import parse_args, rate_bpp, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--channels", "8", "8", "--batch", "2", "--crop", "64", "--threads", "1", "--device", "cpu"]


def script(name: str):
    """A script of scripts/ as a module."""
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(tmp_path_factory, data_dir) -> Path:
    """11 small crops of training photographs (the last 8 are the held-out ones)."""
    folder = tmp_path_factory.mktemp("photos") / "train"
    folder.mkdir()
    for path in sorted((data_dir / "train").glob("*.png"))[:11]:
        with Image.open(path) as image:
            image.convert("RGB").crop((0, 0, 192, 160)).save(folder / path.name)
    return folder


@pytest.fixture(scope="module")
def tiny_pack(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "lic-train.zip"
    pack.write_pack(photos, out)
    return out


def losses(out: Path) -> list[float]:
    with (out / "log.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle) if row["kind"] == "train"]


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def first_round(tiny_pack, photos, tmp_path_factory) -> dict[str, Path]:
    """Round 1 of a tiny model (3 steps on the pack), assembled: candidate, fp32 master, fp16 init."""
    folder = tmp_path_factory.mktemp("round1")
    out = folder / "out"
    train_main([*TINY, "--data", str(tiny_pack), "--out", str(out), "--steps", "3"])
    files = {"out": out, "candidate": folder / "candidate.pt", "master": folder / "master.pt"}
    files["init"] = folder / "init.pt"
    rounds.main(
        ["assemble", str(out), "--out", str(files["candidate"]), "--data", str(photos)]
        + ["--master", str(files["master"]), "--init-out", str(files["init"])]
    )
    return files


# the pack


def test_pack_holds_the_reduced_training_photos_and_every_hash(photos, tiny_pack, tmp_path):
    images, manifest = pack.read_pack(tiny_pack)
    names = sorted(p.name for p in photos.glob("*.png"))
    assert [p["name"] for p in manifest["photos"]] == names[:3]  # all but the last 8
    assert [p["name"] for p in manifest["held_out"]] == names[3:]
    for entry in manifest["photos"] + manifest["held_out"]:
        assert entry["sha256"] == weights.file_sha256(photos / entry["name"])
    for image, entry in zip(images, manifest["photos"], strict=True):
        with Image.open(photos / entry["name"]) as source:
            pixels = np.asarray(source.convert("RGB")).astype(int)
        blocks = pixels[0::2, 0::2] + pixels[1::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 1::2]
        np.testing.assert_array_equal(image, (blocks + 2) // 4)  # a box filter by 2, rounded
        assert image.shape == (80, 96, 3) and entry["size"] == [96, 80]
    with zipfile.ZipFile(tiny_pack) as archive:
        stored = sum(info.file_size for info in archive.infolist())
    assert stored < tiny_pack.stat().st_size < stored + 2000
    again = tmp_path / "again.zip"
    pack.write_pack(photos, again)
    assert again.read_bytes() == tiny_pack.read_bytes()  # the same photographs make the same bytes


def test_pack_of_large_photographs_is_cropped_to_the_tile(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    pixels = np.arange(1300 * 700 * 3, dtype=np.uint32).reshape(1300, 700, 3)
    for name in ("a.png", "b.png"):
        Image.fromarray((pixels % 251).astype(np.uint8)).save(folder / name)
    pack.write_pack(folder, tmp_path / "p.zip", held_out=1)
    images, manifest = pack.read_pack(tmp_path / "p.zip")
    assert [image.shape for image in images] == [(512, 350, 3)]  # 650 x 350 reduced, centre-cropped
    assert [p["name"] for p in manifest["photos"]] == ["a.png"] and manifest["photos"][0]["size"] == [
        350,
        512,
    ]


@pytest.mark.parametrize("name", ["kodak", "Kodak"])
def test_pack_refuses_kodak(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(SystemExit, match="Kodak is the test set"):
        pack.write_pack(folder, tmp_path / "p.zip")


def test_the_real_pack_fits_the_carry_budget(data_dir, tmp_path):
    """The 49 training photographs: 41 packed in 15-20 MB (docs/lic-training.md's budget), the last 8 held out."""
    out = tmp_path / "lic-train.zip"
    manifest = pack.write_pack(data_dir / "train", out)
    assert len(manifest["photos"]) == 41
    assert [p["name"] for p in manifest["held_out"]] == [f"{n:03}.png" for n in range(42, 50)]
    assert 15e6 < out.stat().st_size < 20e6


# crops drawn on the device


def test_device_crops_are_the_slices_of_the_source_flipped_as_drawn():
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(40, 50, 3), (64, 33, 3), (70, 90, 3)]
    ]
    crops = DeviceCrops(images, 32, "cpu")
    draws = crops.draw(64, crops.generator(7))
    taken = crops.take(draws).numpy()
    assert taken.shape == (64, 32, 32, 3)
    for b in range(64):
        image = images[int(draws.image[b])]
        top, left = (int(v) for v in draws.corner[b])
        assert 0 <= top <= image.shape[0] - 32 and 0 <= left <= image.shape[1] - 32
        expected = image[top : top + 32, left : left + 32]
        upside_down, mirrored = (bool(v) for v in draws.flips[b])
        expected = expected[::-1] if upside_down else expected
        expected = expected[:, ::-1] if mirrored else expected
        np.testing.assert_array_equal(taken[b], expected)
    combinations = {tuple(bool(v) for v in flips) for flips in draws.flips}
    assert combinations == {(False, False), (False, True), (True, False), (True, True)}
    same = crops.draw(64, crops.generator(7))
    assert torch.equal(same.corner, draws.corner) and torch.equal(same.flips, draws.flips)
    assert not torch.equal(crops.draw(64, crops.generator(8)).corner, draws.corner)


def test_flips_are_real_flips():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    crops = DeviceCrops([image], 48, "cpu")  # one position: only the flips differ
    draws = crops.draw(32, crops.generator(0))
    taken = crops.take(draws).numpy()
    for b in range(32):
        upside_down, mirrored = (bool(v) for v in draws.flips[b])
        expected = np.flip(image, [axis for axis, flip in ((0, upside_down), (1, mirrored)) if flip])
        np.testing.assert_array_equal(taken[b], expected)
        assert (upside_down or mirrored) == (not np.array_equal(taken[b], image))


def test_a_photograph_smaller_than_the_crop_repeats_its_edges_and_batches_are_floats():
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    crops = DeviceCrops([image], 32, "cpu")
    draws = crops.draw(4, crops.generator(0))
    padded = np.pad(image, ((0, 12), (0, 2), (0, 0)), mode="edge")
    for b, crop in enumerate(crops.take(draws).numpy()):
        flips = [axis for axis, flip in enumerate(draws.flips[b].tolist()) if flip]
        np.testing.assert_array_equal(crop, np.flip(padded, flips))
    batch = crops.batch(4, crops.generator(0), torch.channels_last)
    assert batch.shape == (4, 3, 32, 32) and batch.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(batch, crops.take(draws).permute(0, 3, 1, 2).float() / 255, rtol=0, atol=0)


# speed flags


@pytest.mark.parametrize("architecture", ["hyperprior", "factorized"])
def test_bf16_autocast_runs_the_transforms_in_bf16_and_keeps_likelihoods_float32(architecture):
    torch.manual_seed(0)
    model = build(architecture, 8, 8).train()
    x = torch.rand(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.tensor([0, 7]))
    assert out["x_hat"].dtype == torch.bfloat16
    assert {name: values.dtype for name, values in out["likelihoods"].items()} == dict.fromkeys(
        out["likelihoods"], torch.float32
    )
    assert rate_bpp(out["likelihoods"], 64 * 64).dtype == torch.float32


@pytest.mark.parametrize("flags", [[], ["--bf16"], ["--channels-last"], ["--bf16", "--channels-last"]])
def test_three_steps_with_each_flag_give_finite_losses(tiny_pack, tmp_path, flags):
    train_main([*TINY, *flags, "--data", str(tiny_pack), "--out", str(tmp_path), "--steps", "3"])
    assert losses(tmp_path) and all(math.isfinite(v) for v in losses(tmp_path))
    last = json.loads((tmp_path / "round.json").read_text())["training"]["rounds"][-1]
    assert (last["bf16"], last["channels_last"], last["compile"]) == (
        "--bf16" in flags,
        "--channels-last" in flags,
        False,
    )


def test_compile_that_fails_trains_eagerly_and_says_so_in_one_line(tiny_pack, tmp_path, monkeypatch, capsys):
    def broken(model):
        def forward(*args):
            raise RuntimeError("no compiler here\nsecond line")

        return forward

    monkeypatch.setattr(torch, "compile", broken)
    train_main([*TINY, "--compile", "--data", str(tiny_pack), "--out", str(tmp_path), "--steps", "3"])
    said = [line for line in capsys.readouterr().err.splitlines() if "--compile" in line]
    assert said == ["--compile: torch.compile failed (RuntimeError: no compiler here); training without it"]
    assert all(math.isfinite(v) for v in losses(tmp_path))
    assert json.loads((tmp_path / "round.json").read_text())["training"]["rounds"][-1]["compile"] is False


@pytest.mark.slow
def test_compiled_training_gives_finite_losses(tiny_pack, tmp_path):
    """torch.compile on the CPU: about 80 s of compiling on the 2-core machine."""
    train_main(
        [*TINY, "--compile", "--bf16", "--data", str(tiny_pack), "--out", str(tmp_path), "--steps", "3"]
    )
    assert all(math.isfinite(v) for v in losses(tmp_path))
    assert json.loads((tmp_path / "round.json").read_text())["training"]["rounds"][-1]["compile"] is True


def test_speed_script_times_each_configuration_and_picks_one(tiny_pack, tmp_path, capsys):
    out = tmp_path / "speed.json"
    script("lic-train-speed").main(
        [
            "--data",
            str(tiny_pack),
            "--configs",
            "eager-fp32,bf16+channels-last",
            "--steps",
            "2",
            "--warmup",
            "1",
        ]
        + ["--batch", "2", "--crop", "64", "--channels", "8", "8", "--device", "cpu", "--threads", "1"]
        + ["--json", str(out)]
    )
    summary = json.loads(out.read_text())
    assert [row["name"] for row in summary["rows"]] == ["eager-fp32", "bf16+channels-last"]
    assert all(row["steps_per_s"] > 0 and math.isfinite(row["loss"]) for row in summary["rows"])
    assert summary["pick"]["name"] in capsys.readouterr().out


# the round's master


def test_master_parts_are_under_the_limit_and_reassemble_exactly(tmp_path):
    model = build("hyperprior")  # full size: 7 M parameters, 28 MB in fp32
    record = {"config": model.config(), "lambdas": [0.1] * 8, "distortion": "mse", "training": {}}
    rounds.write_master(model, tmp_path, record)
    parts = json.loads((tmp_path / "round.json").read_text())["parts"]
    assert len(parts) == 2 and all(p["bytes"] < rounds.PART_LIMIT for p in parts)
    for part in parts:
        assert (tmp_path / part["file"]).stat().st_size == part["bytes"] < 15 * 2**20
        assert all(
            t.dtype in (torch.float32, torch.int32) for t in torch.load(tmp_path / part["file"]).values()
        )
    assert states_equal(rounds.read_master(tmp_path)[0].state_dict(), model.state_dict())
    # round.json is data: a part named outside its folder is refused before anything is read
    document = json.loads((tmp_path / "round.json").read_text())
    document["parts"][0]["file"] = "../elsewhere/master-0.pt"
    (tmp_path / "round.json").write_text(json.dumps(document))
    with pytest.raises(SystemExit, match="is not a file of"):
        rounds.read_master(tmp_path)


def test_split_state_keeps_order_and_refuses_a_tensor_over_the_limit():
    state = {name: torch.zeros(1000) for name in "abcde"}  # 4000 bytes each
    parts = rounds.split_state(state, limit=rounds.PART_MARGIN + 9000)
    assert [list(part) for part in parts] == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="a alone is 4000 bytes"):
        rounds.split_state(state, limit=rounds.PART_MARGIN + 3000)


def test_a_round_writes_the_trained_state_exactly_and_an_altered_part_is_refused(tiny_pack, tmp_path):
    out = tmp_path / "out"
    model = train(parse_args([*TINY, "--data", str(tiny_pack), "--out", str(out), "--steps", "3"]))
    rounds_model, record = rounds.read_master(out)
    assert states_equal(rounds_model.state_dict(), model.state_dict())
    last = record["training"]["rounds"][-1]
    assert last["steps"] == 3 and last["data"]["pack"] == "lic-train.zip"
    assert last["data"]["sha256"] == weights.file_sha256(tiny_pack) and len(last["data"]["held_out"]) == 8
    with (out / "master-0.pt").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00")
    with pytest.raises(SystemExit, match="sha256 differs"):
        rounds.read_master(out)


def test_init_from_a_master_continues_from_the_same_parameters(first_round, tiny_pack, photos, tmp_path):
    trained = rounds.read_master(first_round["out"])[0].state_dict()
    train_main(
        [*TINY, "--data", str(tiny_pack), "--out", str(tmp_path / "b"), "--steps", "0"]
        + ["--init", str(first_round["master"])]
    )
    assert states_equal(rounds.read_master(tmp_path / "b")[0].state_dict(), trained)
    # the fp16 init file: the same parameters rounded to fp16, small enough to carry
    train_main(
        [*TINY, "--data", str(tiny_pack), "--out", str(tmp_path / "c"), "--steps", "0"]
        + ["--init", str(first_round["init"])]
    )
    parameters = dict(build("hyperprior", 8, 8).named_parameters())
    halved = rounds.read_master(tmp_path / "c")[0].state_dict()
    for name in parameters:
        assert torch.equal(halved[name], trained[name].half().float()), name
    assert first_round["init"].stat().st_size < first_round["master"].stat().st_size
    # its coding tables were left out; an export rebuilds them, so the round still makes codec weights
    assert halved["gaussian_conditional._quantized_cdf"].numel() == 0
    rounds.assemble(tmp_path / "c", tmp_path / "c.pt", photos)
    assert weights.load(tmp_path / "c.pt")[0].gaussian_conditional._quantized_cdf.numel() > 0


def test_rounds_accumulate_in_the_exported_weights_and_the_card_shows_totals(
    first_round, tiny_pack, photos, tmp_path
):
    _, meta, _ = weights.load(first_round["candidate"])
    assert [r["steps"] for r in meta["training"]["rounds"]] == [3]
    out = tmp_path / "round2"
    train_main(
        [*TINY, "--data", str(tiny_pack), "--out", str(out), "--steps", "4"]
        + ["--init", str(first_round["candidate"])]
    )
    shipped = tmp_path / "codecs" / "hyperprior.pt"
    rounds.assemble(out, shipped, photos)
    _, meta, _ = weights.load(shipped)
    entries = meta["training"]["rounds"]
    assert [r["steps"] for r in entries] == [3, 4] and entries[1]["init"]["file"] == "candidate.pt"
    text = card.write_card(shipped.parent).read_text()
    assert "Training rounds: 2, 7 steps in all" in text
    assert "  - round 1: 3 steps in" in text and "  - round 2: 4 steps in" in text
    assert "data pack lic-train.zip (sha256 " in text


def test_weights_from_before_rounds_count_as_one_round():
    _, meta, _ = weights.load(weights.default_path("hyperprior"), exact=False)
    (entry,) = rounds.rounds_of(meta["training"])
    assert entry["steps"] == meta["training"]["steps"] and entry["device"] == meta["training"]["device"]
    assert f"Training rounds: 1, {entry['steps']} steps in all" in "\n".join(
        card.rounds_text(meta["training"])
    )


def test_assemble_refuses_other_held_out_photographs(first_round, photos, tmp_path):
    other = tmp_path / "train"
    other.mkdir()
    for path in sorted(photos.glob("*.png"))[:-1]:  # without the last: another last 8
        (other / path.name).write_bytes(path.read_bytes())
    with pytest.raises(SystemExit, match="the round's pack held out"):
        rounds.assemble(first_round["out"], tmp_path / "c.pt", other)


# the shipping decision


def test_decision_ships_only_when_the_whole_interval_of_the_mean_is_negative():
    select = script("lic-select")
    rates = [-3.0, -1.0, -2.5, -0.5, -2.0, -1.5, -4.0, -1.0]
    mean, (low, high), ship = select.decide(rates)
    assert mean == pytest.approx(-1.9375) and low < mean < high < 0 and ship
    assert (low, high) == select.bootstrap_ci(np.asarray(rates))
    # a negative mean that one photograph's gain makes (the interval reaches past 0) is noise: NO
    mean, (low, high), ship = select.decide([-8.0, 0.5, 0.2, 0.4, 0.1, 0.3, 0.6, 0.2])
    assert mean < 0 < high and not ship
    assert select.decide([0.0] * 8) == (0.0, (0.0, 0.0), False)
    assert select.decide([-0.3, -0.1, -0.2, -0.25], margin=0.5)[2] is False
    assert select.decide([-0.9, -0.7, -0.8, -0.75], margin=0.5)[2] is True
    mean, _, ship = select.decide([math.nan, -5.0])  # an undefined BD-rate: never SHIP
    assert math.isnan(mean) and not ship
    shipped = [(0.2, 26.0), (0.4, 29.0), (0.8, 32.0), (1.6, 34.0)]
    cheaper = [(rate * 0.9, quality) for rate, quality in shipped]  # the same quality for 10 % fewer bits
    assert select.image_bd_rate(shipped, cheaper) == pytest.approx(-10.0)
    assert select.image_bd_rate(cheaper, shipped) == pytest.approx(100 / 0.9 - 100)


@pytest.fixture(scope="module")
def two_tiny_models(tiny_pack, photos, tmp_path_factory) -> tuple[Path, Path]:
    """Two exported tiny models whose quality rises with rate: 200 steps, then 40 more from there."""
    folder = tmp_path_factory.mktemp("tiny")
    fast = [*TINY, "--lr", "5e-3", "--data", str(tiny_pack)]
    train_main([*fast, "--out", str(folder / "a"), "--steps", "200"])
    rounds.assemble(folder / "a", folder / "a.pt", photos)
    train_main([*fast, "--out", str(folder / "b"), "--steps", "40", "--init", str(folder / "a.pt")])
    rounds.assemble(folder / "b", folder / "b.pt", photos)
    return folder / "a.pt", folder / "b.pt"


def test_select_on_two_tiny_models_gives_bd_rates_and_the_decision_their_mean_says(
    two_tiny_models, photos, tmp_path, capsys
):
    select = script("lic-select")
    shipped, candidate = two_tiny_models
    out = tmp_path / "select.json"
    select.main([str(candidate), "--shipped", str(shipped), "--data", str(photos), "--json", str(out)])
    decision = json.loads(out.read_text())
    rates = list(decision["bd_rates"].values())
    assert len(rates) == 8 and any(math.isfinite(v) for v in rates)
    mean, (low, high), ship = select.decide(rates)
    assert decision["ship"] is ship and ship == (all(math.isfinite(v) for v in rates) and high < 0)
    np.testing.assert_equal([decision["mean"], *decision["ci"]], [mean, low, high])  # NaN where undefined
    said = capsys.readouterr().out.splitlines()
    assert said[-1].endswith(": SHIP" if ship else ": NO")
    assert said[-2].startswith("top of the ladder, mean psnr_rgb: shipped ")
    assert len(decision["points"]["candidate"]["011.png"]) == 8  # every rung of the ladder
    # a model against itself: every defined BD-rate is 0, and it does not ship
    select.main([str(shipped), "--shipped", str(shipped), "--data", str(photos), "--json", str(out)])
    same = json.loads(out.read_text())
    assert {v for v in same["bd_rates"].values() if math.isfinite(v)} == {0.0} and same["ship"] is False
