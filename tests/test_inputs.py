"""Bad or odd inputs are caught up front, and names from a user's data are printed quoted (issue 15)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_identical_images_are_measured_once_with_a_note_naming_every_file(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut, coffee = data.astronaut()[:64, :96], data.coffee()[:64, :96]
    Image.fromarray(astronaut).save(photos / "a.png")
    Image.fromarray(astronaut).save(photos / "b.ppm")  # the same pixels in another file format
    Image.fromarray(coffee).save(photos / "c.png")
    out = tmp_path / "run"
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=30,70",
                    "--executor", "inline", "--metrics", "psnr_rgb", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    note = "same pixels in a.png, b.ppm (measured once, as the first)"
    assert f"note: {note}: a.png" in result.output
    assert "4 task(s) run, 0 already stored" in result.output
    with sqlite3.connect(out / "results.sqlite") as db:
        stored = db.execute("SELECT image, quality FROM results ORDER BY image, quality").fetchall()
    assert stored == [("a.png", 30), ("a.png", 70), ("c.png", 30), ("c.png", 70)]
    images = json.loads((out / "run.json").read_text())["config"]["dataset"]["images"]
    assert [(image["name"], image["notes"]) for image in images] == [("a.png", [note]), ("c.png", [])]


def test_file_names_are_quoted_so_they_cannot_forge_a_line_or_reach_the_terminal(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    forged = "x\nnote: all 24 images verified.png"
    Image.fromarray(data.astronaut()[:64, :96]).save(photos / "plain.png")
    Image.fromarray(np.dstack([data.camera()[:64, :96]] * 3)).convert("L").save(photos / forged, "PNG")
    garbage = photos / "\x1b[2Jclear.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "run"
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=50", "--skip-bad",
                    "--executor", "inline", "--metrics", "psnr_rgb", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("note: all")] == []
    assert f"note: grayscale converted to RGB: {forged!r}" in result.output
    assert f"note: skipped: {str(garbage)!r}: unreadable" in result.output
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--out", tmp_path / "other")
    assert result.exit_code == 2
    assert "\x1b" not in result.output and f"\n{str(garbage)!r}: unreadable" in result.output


def test_max_pixels_bounds_the_images_of_a_run_and_the_bitstreams_verify_decodes(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:64, :96]).save(photos / "small.png")
    Image.fromarray(data.astronaut()[:128, :96]).save(photos / "large.png")
    result = invoke(
        "run", "--codecs", "jpeg", "--dataset", photos, "--max-pixels", 6144, "--out", tmp_path / "r"
    )
    assert result.exit_code == 2
    assert f"{photos / 'large.png'}: 96x128 is 12288 pixels, over --max-pixels 6144" in result.output
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--max-pixels", 6144, "--skip-bad",
                    "--qualities", "jpeg=50", "--executor", "inline", "--out", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 0 and "1 task(s) run" in result.output

    folder = tmp_path / "bitstreams"
    written = invoke("verify", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=50",
                     "--write-bitstreams", folder, "--variants", "1-thread")  # fmt: skip
    assert written.exit_code == 0, written.output
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["items"][0] |= {"width": 100_000, "height": 100_000, "image": "a.png\nmatch: all \x1b[32mgood"}
    manifest["items"][1] |= {"width": "96", "height": 64}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("verify", "--bitstreams", folder, "--variants", "1-thread", "--max-pixels", 10**9)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert "100000x100000 is 10000000000 pixels, over --max-pixels 1000000000" in errors[0]
    assert errors[0].startswith("error: jpeg 'a.png\\nmatch: all \\x1b[32mgood' q50 (1-thread): ")
    assert "\x1b" not in result.output and "\nmatch" not in result.output  # names from a manifest, quoted
    assert "image size '96'x64 is not two positive whole numbers" in errors[1]
