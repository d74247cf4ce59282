"""`bench verify`'s differences: largest pixel difference and PSNR per decode and variant, failures only for
a decoder that promises the same pixels (bench.codec.decode_promise)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench import verify
from bench.cli import cli
from bench.codec import decode_promise
from bench.images import pixel_sha256
from bench.lic.bitstream import NumericsMismatch
from bench.lic.codec import LicCodec

CROP = (
    slice(0, 128),
    slice(0, 128),
)  # of the astronaut: oneDNN off moves one pixel of its float32 synthesis here


def _psnr(mse: float) -> float:
    """The closed form, written out here: 10 log10(255^2 / MSE)."""
    return 10 * math.log10(255**2 / mse)


def test_pixel_difference_is_the_largest_absolute_difference_and_the_psnr_of_the_mse():
    reference = np.full((4, 5, 3), 100, np.uint8)
    decoded = reference.copy()
    decoded[0, 0, 0] = 103  # +3
    decoded[2, 1, 2] = 99  # -1
    decoded[3, 4, 1] = 98  # -2: squares 9 + 1 + 4 = 14 over 60 samples
    assert verify.pixel_difference(reference, decoded) == (3, pytest.approx(_psnr(14 / 60)))
    assert verify.pixel_difference(decoded, reference) == (3, pytest.approx(_psnr(14 / 60)))
    assert verify.pixel_difference(reference, reference.copy()) == (0, math.inf)
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)  # no uint8 wrap-around
    assert verify.pixel_difference(black, white) == (255, 0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        verify.pixel_difference(black, np.zeros((2, 3, 3), np.uint8))


class _Fixed:
    """A stand-in codec: decodes anything to ``pixels`` (or raises ``raises``), promising ``promise``."""

    name = "fixed"

    def __init__(self, pixels: np.ndarray, promise: str | None = None, raises: Exception | None = None):
        self.pixels, self.raises = pixels, raises
        if promise is not None:
            self.decode_promise = promise

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        if self.raises is not None:
            raise self.raises
        return self.pixels


def _folder(tmp_path: Path, reference: np.ndarray, keep_reference: bool = True) -> list[dict]:
    (tmp_path / "x.bin").write_bytes(b"any")
    item = {
        "file": "x.bin",
        "codec": "fixed",
        "image": "i.png",
        "quality": 1,
        "height": reference.shape[0],
        "width": reference.shape[1],
        "sha256": pixel_sha256(reference),
    }
    if keep_reference:
        Image.fromarray(reference).save(tmp_path / "x.png")
        item["reference"] = "x.png"
    return [item]


def test_differences_fail_a_decoder_that_promises_pixels_and_are_reported_for_one_that_promises_symbols(
    tmp_path,
):
    rng = np.random.default_rng(0)
    reference = rng.integers(10, 240, (6, 7, 3), dtype=np.uint8)
    off = reference.copy()
    off[1, 2, 0] += 2
    off[5, 6, 2] -= 1  # squares 4 + 1 over 126 samples
    items = _folder(tmp_path, reference)
    expected = (2, pytest.approx(_psnr(5 / 126)))

    def run(codec):
        (result,) = verify.decode_items(items, tmp_path, lambda item: codec)
        return result

    for promise in (None, "pixels"):  # undeclared: the same pixels are promised
        result = run(_Fixed(off, promise))
        assert result["status"] == "mismatch" and (result["max_diff"], result["psnr_db"]) == expected
        assert result["reason"].startswith("pixels differ: largest difference 2, PSNR ")
    result = run(_Fixed(off, "symbols"))
    assert result["status"] == "differ" and (result["max_diff"], result["psnr_db"]) == expected
    assert "largest difference 2" in result["reason"]
    result = run(_Fixed(reference.copy(), "symbols"))
    assert (result["status"], result["max_diff"], result["psnr_db"]) == ("match", 0, math.inf)
    # what a decoder that promises the symbols cannot get away with
    result = run(_Fixed(off, "symbols", NumericsMismatch("decoded symbols differ (symbols CRC mismatch)")))
    assert (
        result["status"] == "mismatch" and "CRC mismatch" in result["reason"] and result["max_diff"] is None
    )
    result = run(_Fixed(off, "symbols", RuntimeError("boom")))
    assert result["status"] == "error" and result["reason"] == "RuntimeError: boom"
    result = run(_Fixed(off, "always"))
    assert result["status"] == "error" and "decode_promise 'always'" in result["reason"]


def test_without_usable_reference_pixels_a_difference_is_of_unknown_size(tmp_path):
    reference = np.full((3, 3, 3), 50, np.uint8)
    off = reference + 1
    items = _folder(tmp_path, reference, keep_reference=False)  # a folder written before references
    (result,) = verify.decode_items(items, tmp_path, lambda item: _Fixed(off, "symbols"))
    assert result["status"] == "differ" and result["max_diff"] is None and result["psnr_db"] is None
    assert result["difference_unknown"] == "ValueError: the folder keeps no reference pixels"
    items = _folder(tmp_path, reference)
    Image.fromarray(off).save(tmp_path / "x.png")  # not the pixels the manifest's hash names
    (result,) = verify.decode_items(items, tmp_path, lambda item: _Fixed(off))
    assert result["status"] == "mismatch" and result["max_diff"] is None
    assert "is not the reference decode" in result["difference_unknown"]
    items[0]["reference"] = "../x.png"  # the folder's rules hold for references too
    (result,) = verify.decode_items(items, tmp_path, lambda item: _Fixed(off))
    assert "is not a file inside" in result["difference_unknown"]


def test_lic_declares_what_its_decoders_promise():
    assert decode_promise(LicCodec("lic", {})) == "pixels"
    assert decode_promise(LicCodec("lic", {"synthesis": "float32"})) == "symbols"
    assert decode_promise(LicCodec("lic", {"exact": False})) == "pixels"  # promises less: held to the pixels
    assert decode_promise(_Fixed(np.zeros((1, 1, 3), np.uint8))) == "pixels"


@pytest.fixture(scope="module")
def lic_streams(tmp_path_factory) -> Path:
    """A folder of real lic bitstreams of one crop, exact and synthesis=float32 (the same bitstream)."""
    from bench.catalog import load_catalog

    folder = tmp_path_factory.mktemp("verify")
    image = folder / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[CROP])).save(image)
    info = type("Info", (), {"name": image.name, "path": image})
    entry = load_catalog()["lic"]
    codecs = [
        ("lic", entry, (0.0,)),
        ("lic:synthesis=float32", entry.with_options({"synthesis": "float32"}), (0.0,)),
    ]
    manifest = verify.write_bitstreams(codecs, [info], folder / "streams")
    assert not any("error" in item for item in manifest["items"])
    return folder / "streams"


def _only(folder: Path, codec: str, destination: Path, shift: int = 0) -> Path:
    """A copy of ``folder`` with only ``codec``'s items; with ``shift``, its reference pixels (PNG and
    hash) are altered as if the encoding machine had decoded differently: +shift on the first sample,
    -1 on the last, so that the decode here differs by exactly that much."""
    shutil.copytree(folder, destination)
    manifest = verify.read_manifest(destination)
    manifest["items"] = [item for item in manifest["items"] if item["codec"] == codec]
    for item in manifest["items"]:
        if shift:
            pixels = np.array(Image.open(destination / item["reference"]))
            assert int(pixels.flat[0]) + shift <= 255 and int(pixels.flat[-1]) >= 1
            pixels.flat[0] += shift
            pixels.flat[-1] -= 1
            Image.fromarray(pixels).save(destination / item["reference"])
            item["sha256"] = pixel_sha256(pixels)
    (destination / verify.MANIFEST).write_text(json.dumps(manifest))
    return destination


def _verify(folder: Path, variants: str, json_path: Path):
    return CliRunner().invoke(
        cli, ["verify", "--bitstreams", str(folder), "--variants", variants, "--json", str(json_path)]
    )


@pytest.mark.slow
def test_a_forced_difference_fails_the_exact_decoder_and_not_the_float32_synthesis(lic_streams, tmp_path):
    """The same known difference (+3 on one sample, -1 on another of the 128 x 128 x 3) in both codecs'
    references: a failure for lic (exit 1), a reported difference for lic:synthesis=float32 (exit 0)."""
    expected_psnr = _psnr((9 + 1) / (128 * 128 * 3))
    exact = _only(lic_streams, "lic", tmp_path / "exact", shift=3)
    result = _verify(exact, "1-thread", tmp_path / "exact.json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads((tmp_path / "exact.json").read_text())
    assert (row["status"], row["max_diff"], row["psnr_db"]) == ("mismatch", 3, pytest.approx(expected_psnr))
    listed = "mismatch: lic astronaut.png q0 (1-thread): pixels differ: largest difference 3, PSNR"
    assert f"{listed} {expected_psnr:.2f} dB" in result.output
    assert "0 match, 1 mismatch(es)" in result.output

    mixed = _only(lic_streams, "lic:synthesis=float32", tmp_path / "mixed", shift=3)
    result = _verify(mixed, "1-thread", tmp_path / "mixed.json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "mixed.json").read_text())
    assert row["status"] == "differ" and row["max_diff"] >= 3 and row["psnr_db"] <= expected_psnr + 1e-9
    assert "lic:synthesis=float32  astronaut.png  0/1 (1 differ)" in result.output
    assert "lic:synthesis=float32  max " in result.output  # the difference table's row
    assert "1 differ (as their decoder allows), 0 mismatch(es), 0 decode error(s)" in result.output


def _decode_without_onednn(folder: Path, item: dict) -> np.ndarray:
    """The no-onednn variant's decode, made here in-process: oneDNN off, one thread."""
    codec = LicCodec("lic", {"synthesis": "float32", "threads": 1})
    with torch.backends.mkldnn.flags(enabled=False):
        return codec.decode((folder / item["file"]).read_bytes(), (item["height"], item["width"]))


@pytest.mark.slow
def test_float32_synthesis_under_real_variants_reports_its_differences_and_passes(lic_streams, tmp_path):
    """Real variants in their own processes: every decode of the float32 synthesis is a match or a
    difference (never a failure), each with its largest difference and PSNR, those of the no-onednn
    variant the ones an in-process decode without oneDNN gives by the closed form; exit status 0."""
    folder = _only(lic_streams, "lic:synthesis=float32", tmp_path / "mixed")
    result = _verify(folder, "1-thread,no-onednn", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    rows = {row["variant"]: row for row in json.loads((tmp_path / "r.json").read_text())}
    assert set(rows) == {"1-thread", "no-onednn"}
    for row in rows.values():
        assert row["status"] in ("match", "differ")
        assert (row["max_diff"] == 0) == (row["psnr_db"] == math.inf) == (row["status"] == "match")
        assert row["max_diff"] <= 3  # the synthesis's float rounding only: the symbols are the encoder's
    (item,) = verify.read_manifest(folder)["items"]
    reference = np.array(Image.open(folder / item["reference"]))
    ours = _decode_without_onednn(folder, item).astype(np.int64)
    mse = np.mean((ours - reference) ** 2)
    truth = (int(np.abs(ours - reference).max()), math.inf if mse == 0 else _psnr(mse))
    assert (rows["no-onednn"]["max_diff"], rows["no-onednn"]["psnr_db"]) == (
        truth[0],
        pytest.approx(truth[1]),
    )
    assert "summary: 1 image(s) checked, 1 bitstreams, 2 decodes" in result.output


def test_the_folder_keeps_each_reference_decode_as_a_png_unless_asked_not_to(tmp_path):
    from bench.catalog import load_catalog

    image = tmp_path / "a.png"
    original = np.ascontiguousarray(data.astronaut()[:48, :64])
    Image.fromarray(original).save(image)
    info = type("Info", (), {"name": image.name, "path": image})
    codecs = [("jpeg", load_catalog()["jpeg"], (50.0,))]
    (item,) = verify.write_bitstreams(codecs, [info], tmp_path / "kept")["items"]
    kept = np.array(Image.open(tmp_path / "kept" / item["reference"]))
    assert item["reference"] == "jpeg/a-q50.png" and pixel_sha256(kept) == item["sha256"]
    assert 0 < verify.pixel_difference(original, kept)[0]  # the decode, not the original
    (item,) = verify.write_bitstreams(codecs, [info], tmp_path / "bare", references=False)["items"]
    assert "reference" not in item and not list((tmp_path / "bare").rglob("*.png"))
    result = CliRunner().invoke(
        cli, ["verify", "--bitstreams", str(tmp_path / "bare"), "--no-reference-pixels"]
    )
    assert result.exit_code == 2 and "no --codecs" in result.output


def test_the_output_gives_per_variant_the_largest_difference_and_the_lowest_psnr():
    from bench.cli_verify import _difference_table, _table

    def row(variant, status, quality, max_diff=None, psnr=None, **extra):
        return {"codec": "c", "image": "i.png", "quality": quality, "variant": variant, "status": status,
                "max_diff": max_diff, "psnr_db": psnr, **extra}  # fmt: skip

    results = [
        row("a", "match", 1, 0, math.inf),
        row("a", "match", 2, 0, math.inf),
        row("b", "differ", 1, 1, 60.0),
        row("b", "differ", 2, 2, 55.5),
        row("c", "error", 1),
        row("c", "differ", 2, difference_unknown="ValueError: the folder keeps no reference pixels"),
    ]
    assert _table(results, ["a", "b", "c"]) == [
        "codec  image  a    b               c",
        "c      i.png  2/2  0/2 (2 differ)  0/2 (1 differ, 1 error)",
    ]
    assert _difference_table(results, ["a", "b", "c"]) == [
        "largest pixel difference from the reference decode, lowest PSNR:",
        "codec  a          b                c",
        "c      identical  max 2, 55.50 dB  - (1 of unknown size)",
    ]
    assert _difference_table(results[:2], ["a"]) == []  # nothing differed: no table
