"""lic's tiled decoding (bench/lic/tiles.py): the same pixels as a whole-image decode, in bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from bench.lic import tiles
from bench.lic.codec import LicCodec
from bench.lic.model import build

ARCHITECTURES = ("hyperprior", "factorized")
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench-lic-memory.py"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A real photograph cropped to a size that is a multiple of neither 16 nor any tile: 201 x 330."""
    return np.ascontiguousarray(data.astronaut()[37:238, 60:390])


def _latent_size(codec: LicCodec, shape: tuple[int, ...]) -> tuple[int, int]:
    step = codec._loaded().downsampling
    return tuple(-(-side // step) * step // 16 for side in shape[:2])


def _decode_with(codec: LicCodec, encoded: bytes, shape: tuple[int, ...], budget: int) -> np.ndarray:
    model = codec._loaded()
    model.tile_budget = budget
    try:
        return codec.decode(encoded, shape[:2])
    finally:
        model.tile_budget = tiles.BUDGET


def test_halo_and_scale_follow_the_receptive_field():
    """Worked out in the module's docstring: 15 pixels before a cut and 30 after for the synthesis (one
    latent position before, two after), 4 and 7 latent positions for the hyper-synthesis (one and two
    hyper-latent positions)."""
    model = build("hyperprior")
    assert tiles.scale(model.g_s) == 16 and tiles.halo(model.g_s) == (1, 2)
    assert tiles.scale(model.h_s) == 4 and tiles.halo(model.h_s) == (1, 2)
    with pytest.raises(TypeError, match="no receptive field for MaxPool2d"):
        tiles.halo(torch.nn.Sequential(torch.nn.MaxPool2d(2)))
    with pytest.raises(ValueError, match="must keep the size"):
        tiles.halo(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, stride=2, padding=1)))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("route", ["int8", "float64"])
def test_tiled_exact_decode_is_bit_identical_to_the_whole_image_decode(
    architecture, route, image, monkeypatch
):
    """Through both routes of the exact decoder, budgets that cut the latent into a few uneven tiles and
    into one kept position per tile (every tile border a cut) give the whole-image decode's pixels."""
    monkeypatch.setenv("BENCH_LIC_GEMM", route)
    codec = LicCodec("lic", {"architecture": architecture})
    model = codec._loaded()
    assert model.tile_route("g_s") == route
    encoded = codec.encode(image, 3)
    whole = codec.decode(encoded, image.shape[:2])
    per_position = tiles.bytes_per_position(model.g_s, route)
    size = _latent_size(codec, image.shape)
    for budget in (per_position * 120, 1):
        count = len(tiles.tiles_for(size, model.g_s, route, budget))
        assert count == size[0] * size[1] if budget == 1 else 2 < count < 12, (budget, count)
        assert np.array_equal(_decode_with(codec, encoded, image.shape, budget), whole), budget


def test_tiled_exact_scale_path_is_bit_identical(image):
    """The hyper-synthesis' scale indexes and means, tiled down to one hyper-latent position per tile."""
    codec = LicCodec("lic", {})
    model = codec._loaded()
    x = model.pad(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    with torch.no_grad():
        bottleneck = model.entropy_bottleneck
        z_hat = bottleneck.quantize(model.h_a(model.latent(x, 5)), "dequantize", bottleneck._get_medians())
        whole = model.scale_path(z_hat)
        model.tile_budget = 1
        try:
            tiled = model.scale_path(z_hat)
        finally:
            model.tile_budget = tiles.BUDGET
    plan = tiles.tiles_for(tuple(z_hat.shape[-2:]), model.h_s, model.tile_route("h_s"), 1)
    assert len(plan) == z_hat[0, 0].numel()
    assert all(torch.equal(a, b) for a, b in zip(whole, tiled, strict=True))


@pytest.mark.parametrize("side", ["before", "after"])
def test_a_halo_one_position_short_changes_the_exact_pixels(side, image, monkeypatch):
    """The control: with one latent position less of halo on either side of each cut, tiles see zeros
    where the whole image has values, and the pixels near the cuts differ."""
    codec = LicCodec("lic", {"architecture": "factorized"})
    encoded = codec.encode(image, 3)
    whole = codec.decode(encoded, image.shape[:2])
    before, after = tiles.halo(codec._loaded().g_s)
    short = (before - 1, after) if side == "before" else (before, after - 1)
    monkeypatch.setattr(tiles, "halo", lambda layers: short)
    budget = tiles.bytes_per_position(codec._loaded().g_s, codec._loaded().tile_route("g_s")) * 40
    tiled = _decode_with(codec, encoded, image.shape, budget)
    assert not np.array_equal(tiled, whole)


@pytest.mark.parametrize("options", [{"exact": False}, {"synthesis": "float32"}])
def test_tiled_float_synthesis_stays_within_float_noise(options, image):
    """float32 convolutions of other sizes may round differently: measured, a few pixel values in 10^5
    one grey level off; allowed here at most one level and one value in 10^3."""
    codec = LicCodec("lic", options)
    encoded = codec.encode(image, 3)
    whole = codec.decode(encoded, image.shape[:2])
    budget = tiles.bytes_per_position(codec._loaded().g_s, "float32") * 40
    assert len(tiles.tiles_for(_latent_size(codec, image.shape), codec._loaded().g_s, "float32", budget)) > 2
    difference = np.abs(_decode_with(codec, encoded, image.shape, budget).astype(int) - whole)
    assert difference.max() <= 1 and np.count_nonzero(difference) <= difference.size // 1000


def test_a_smaller_budget_gives_more_tiles_that_cover_the_latent_once():
    model = build("hyperprior")
    size = (135, 240)  # a 3840x2160 image's latent (factorized); the hyperprior's is 136 x 240
    counts = []
    for budget in (64 << 20, 256 << 20, tiles.BUDGET, 32 << 30):
        plan = tiles.tiles_for(size, model.g_s, "float64", budget)
        counts.append(len(plan))
        largest = budget // tiles.bytes_per_position(model.g_s, "float64")
        covered = np.zeros(size, int)
        for tile in plan:
            covered[tile.keep_rows, tile.keep_cols] += 1
            rows, cols = tile.rows.stop - tile.rows.start, tile.cols.stop - tile.cols.start
            assert rows * cols <= largest
            assert tile.rows == slice(max(0, tile.keep_rows.start - 1), min(135, tile.keep_rows.stop + 2))
        assert (covered == 1).all()
    assert (
        counts == sorted(counts, reverse=True) and counts[0] > counts[1] > counts[2] > 1 and counts[-1] == 1
    )


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("route", tiles.ROUTES)
def test_a_kodak_image_decodes_in_one_call_on_every_route(architecture, route):
    """768 x 512 (either way round) fits the default budget whole: no halo, no slowdown."""
    model = build(architecture)
    for shape in ((512, 768), (768, 512)):
        size = tuple(-(-side // model.downsampling) * model.downsampling // 16 for side in shape)
        assert len(tiles.tiles_for(size, model.g_s, route)) == 1
    assert len(tiles.tiles_for((34 * 4, 60 * 4), model.g_s, route)) > 1  # 3840 x 2160 does not


@pytest.mark.slow
def test_a_3840x2160_exact_decode_stays_under_2_gib(tmp_path):
    """scripts/bench-lic-memory.py on its 3840x2160 mosaic of Kodak photographs, the exact decoder through
    int8 GEMMs, in a fresh process: peak resident memory under 2 GiB (measured: 1990 MiB untiled, 1723
    MiB in 2 tiles)."""
    data_dir = Path(os.environ.get("BENCH_DATA_DIR", "")) / "kodak"
    if not data_dir.is_dir():
        pytest.skip("needs $BENCH_DATA_DIR/kodak")
    out = tmp_path / "memory.json"
    command = [sys.executable, str(SCRIPT), "--images", "uhd", "--decoders", "exact-int8", "--json", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=900)
    (row,) = json.loads(out.read_text())
    assert row["tiles"] > 1 and row["peak_mib"] < 2048, row
