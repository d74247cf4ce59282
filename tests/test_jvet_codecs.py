"""JVET's reference software as catalog entries: vtm, vtm420 (VTM's EncoderApp/DecoderApp) and hm (HM's
TAppEncoder/TAppDecoder).

The entries are checked on every machine (they load, their templates and options build, the format is
10-bit YCbCr in and out, no reconstruction file). The round trips need the programs, which no package
offers and CI cannot install: where they are not on PATH the tests skip, naming the build script
(scripts/build-jvet-codecs), also under CI=true. Where the script's copy of the intra configuration file
is found (PREFIX/share/jvet/TAG/ beside PREFIX/bin), the entry's arguments must give the very bitstream
that ``-c`` with that file gives.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from bench.adapters.subprocess_codec import SubprocessCodec
from bench.adapters.yuv import write_yuv
from bench.catalog import load_catalog
from bench.codec import make_codec
from bench.metrics import psnr_rgb

REPO = Path(__file__).resolve().parents[1]
CATALOG = load_catalog(REPO / "codecs")
SCRIPT = "scripts/build-jvet-codecs"
# entry: (encoder, decoder, chroma format, pinned tag, configuration file, the entry's own flags)
ENTRIES = {
    "vtm": ("EncoderApp", "DecoderApp", "444", "VTM-23.13", "encoder_intra_vtm.cfg"),
    "vtm420": ("EncoderApp", "DecoderApp", "420", "VTM-23.13", "encoder_intra_vtm.cfg"),
    "hm": ("TAppEncoder", "TAppDecoder", "444", "HM-18.0", "encoder_intra_main_rext.cfg"),
}
# Arguments of the entries that are not settings of the configuration file (files, size, frames, QP,
# bit depths, chroma format, padding to the minimum block size).
OWN_FLAGS = ("-i", "-b", "-wdt", "-hgt", "-fr", "-f", "-q")
OWN_SETTINGS = {
    "InputBitDepth",
    "InternalBitDepth",
    "OutputBitDepth",
    "InputChromaFormat",
    "ChromaFormatIDC",
    "ConformanceWindowMode",
}
# Lines of HM's file that the hm entry leaves at HM's defaults (tiles, slices, wavefronts, PCM, scaling
# lists, lossless: all off); the bitstream comparison checks that this changes nothing.
HM_DEFAULTS = (
    "Slice",
    "LFCross",
    "PCM",
    "Tile",
    "NumTile",
    "UniformSpacing",
    "ColumnWidth",
    "RowHeight",
    "WaveFront",
    "ScalingList",
    "Transquant",
    "CUTransquant",
    "Level",
)


def codec(name: str) -> SubprocessCodec:
    entry = CATALOG[name]
    return make_codec(entry.name, entry.adapter, entry.options, entry.extra)


def require_programs(name: str) -> None:
    """Skip (also under CI=true: no package offers them) unless the entry's programs are on PATH."""
    encoder, decoder, _, tag, _ = ENTRIES[name]
    missing = [program for program in (encoder, decoder) if shutil.which(program) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not on PATH: no package offers JVET's reference software; "
            f"build {tag} with {SCRIPT} (see the README)"
        )


def settings(argv: tuple[str, ...]) -> dict[str, str]:
    """The ``--Key=value`` arguments of an argv."""
    return dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--"))


def cfg_settings(path: Path) -> dict[str, str]:
    """A JVET configuration file's ``Key : value`` lines (comments dropped)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            found[key] = value
    return found


def installed_cfg(name: str) -> Path:
    """The script's copy of the entry's configuration file, beside the encoder's bin folder; else skip."""
    encoder, _, _, tag, cfg = ENTRIES[name]
    path = Path(shutil.which(encoder)).resolve().parent.parent / "share" / "jvet" / tag / cfg
    if not path.is_file():
        pytest.skip(f"{path} not found: {SCRIPT} installs it beside the programs")
    return path


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A real photograph, cropped to a size that is no multiple of 8 (the encoders pad and crop back)."""
    return np.ascontiguousarray(data.chelsea()[100:160, 150:240])  # 60 x 90


# --- every machine: the entries themselves -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_entry_builds_as_10_bit_ycbcr_intra_with_a_qp_knob(name):
    encoder, decoder, chroma, _, _ = ENTRIES[name]
    entry, spec = CATALOG[name], codec(name).spec
    assert (spec.encode[0], spec.decode[0]) == (encoder, decoder)
    assert spec.image == "yuv" and spec.yuv is not None
    assert (spec.yuv.matrix, spec.yuv.range, spec.yuv.subsampling, spec.yuv.bitdepth) == (
        "bt709",
        "limited",
        chroma,
        10,
    )
    own = settings(spec.encode)
    assert {own[key] for key in ("InputBitDepth", "InternalBitDepth", "OutputBitDepth")} == {"10"}
    assert own["InputChromaFormat"] == own["ChromaFormatIDC"] == chroma
    assert own["IntraPeriod"] == "1" and spec.encode[spec.encode.index("-f") + 1] == "1"
    assert spec.encode[spec.encode.index("-q") + 1] == "{quality}"
    assert "-o" not in spec.encode and "ReconFile" not in own  # no reconstruction file
    assert spec.decode[-2:] == ("-d", "10")
    assert not entry.rate_rises_with_quality and spec.quality_integer
    assert list(entry.qualities) == sorted(entry.qualities, reverse=True)
    knob = codec(name).knob()
    assert knob is not None and knob.domain == "integer"
    assert SCRIPT in spec.install


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_without_the_programs_the_codec_is_unavailable_naming_the_script(name, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = codec(name).available()
    assert reason is not None and "not found on PATH" in reason and SCRIPT in reason


def test_the_two_vtm_entries_differ_only_in_chroma_format():
    def without_chroma(name: str) -> tuple:
        spec = codec(name).spec
        return tuple(arg for arg in spec.encode if "ChromaFormat" not in arg), spec.decode

    assert without_chroma("vtm") == without_chroma("vtm420")


# --- where the programs are on PATH -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_round_trip_rate_and_quality_follow_the_qp(name, crop):
    require_programs(name)
    coder = codec(name)
    assert coder.available() is None
    version = ENTRIES[name][3].split("-")[1]
    assert set(coder.versions().values()) == {version}
    coarse, fine = coder.encode(crop, 37), coder.encode(crop, 22)
    assert len(coarse) < len(fine)
    decoded_coarse, decoded_fine = coder.decode(coarse, crop.shape[:2]), coder.decode(fine, crop.shape[:2])
    assert decoded_coarse.shape == decoded_fine.shape == crop.shape
    assert decoded_coarse.dtype == np.uint8
    assert 25 < psnr_rgb(crop, decoded_coarse) < psnr_rgb(crop, decoded_fine)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_arguments_give_the_bitstream_of_jvets_configuration_file(name, crop, tmp_path):
    """Every setting of the file is in the entry with the same value, and the encoder given ``-c FILE``
    plus the entry's own arguments writes the same bytes as the entry."""
    require_programs(name)
    path = installed_cfg(name)
    coder = codec(name)
    ours = settings(coder.spec.encode)
    theirs = {k: v for k, v in cfg_settings(path).items() if k not in ("BitstreamFile", "ReconFile", "QP")}
    if name == "hm":
        theirs = {k: v for k, v in theirs.items() if not k.startswith(HM_DEFAULTS)}
    differ = {k: (v, ours.get(k)) for k, v in theirs.items() if ours.get(k) != v}
    assert not differ, f"settings of {path.name} missing or different in the {name} entry: {differ}"

    quality = 32
    expected = coder.encode(crop, quality)
    source = tmp_path / "image.yuv"
    write_yuv(source, crop, coder.spec.yuv)
    height, width = crop.shape[:2]
    fields = {"input": source, "output": tmp_path / "cfg.bin", "width": width, "height": height}
    argv = [arg.format(**fields, quality=quality) for arg in coder.spec.encode]
    own = [a for i, a in enumerate(argv) if a in OWN_FLAGS or (i and argv[i - 1] in OWN_FLAGS)]
    own += [a for a in argv if a.startswith("--") and a[2:].split("=")[0] in OWN_SETTINGS]
    subprocess.run([argv[0], "-c", str(path), "-o", "", *own], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "cfg.bin").read_bytes() == expected
