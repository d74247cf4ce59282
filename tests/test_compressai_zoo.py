"""compressai zoo adapters: never downloads; real models (random weights, zoo sizes) in a fake hub cache."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import data

from bench.adapters.compressai_zoo import (
    FIELDS,
    HEADER_SIZE,
    CompressAIBitstreamError,
    CompressAIZooCodec,
    Header,
    pack,
    unpack,
)
from bench.catalog import load_catalog
from bench.codec import make_codec

torch = pytest.importorskip("torch")
zoo = pytest.importorskip("compressai.zoo.image")

FILES = {  # what compressai.zoo downloads for quality 1 (mse), as its model_urls name them
    "bmshj2018-factorized": "bmshj2018-factorized-prior-1-446d5c7f.pth.tar",
    "bmshj2018-hyperprior": "bmshj2018-hyperprior-1-7eb97409.pth.tar",
    "mbt2018-mean": "mbt2018-mean-1-e522738d.pth.tar",
    "mbt2018": "mbt2018-1-3f36cd77.pth.tar",
}
ARCHITECTURES = ("bmshj2018-factorized", "mbt2018-mean", "mbt2018")


def save_zoo_model(path: Path, architecture: str, seed: int = 0, tables: bool = False, wrap: bool = False):
    """A freshly initialised zoo-sized model for quality 1, saved as a checkpoint (coding tables or not)."""
    torch.manual_seed(seed)
    model = zoo.model_architectures[architecture](*zoo.cfgs[architecture][1])
    if tables:
        model.update()
    state = model.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "epoch": 1} if wrap else state, path)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache: TORCH_HOME points into tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[150:251, 200:267])  # 101 x 67: padded to 128 x 128


@pytest.fixture(scope="module", params=ARCHITECTURES)
def folder(request, tmp_path_factory) -> tuple[str, Path]:
    """A folder holding the zoo's quality-1 checkpoint of the architecture, under its exact name."""
    path = tmp_path_factory.mktemp("weights")
    save_zoo_model(path / FILES[request.param], request.param)
    return request.param, path


def test_without_checkpoints_the_codec_is_unavailable_and_names_the_files(hub):
    codec = make_codec("cai-hyperprior", "compressai", load_catalog()["cai-hyperprior"].options)
    reason = codec.available()
    assert str(hub) in reason and FILES["bmshj2018-hyperprior"] in reason
    assert "bmshj2018-hyperprior-8-a583f0cf.pth.tar" in reason and "pretrained=True" in reason
    assert "\n" not in reason and not hub.exists()  # nothing fetched, nothing written


def test_a_checkpoint_in_the_hub_cache_makes_it_available_and_round_trips(hub, image):
    save_zoo_model(hub / FILES["bmshj2018-hyperprior"], "bmshj2018-hyperprior", tables=True)
    codec = make_codec("cai-hyperprior", "compressai", load_catalog()["cai-hyperprior"].options)
    assert codec.available() is None and "qualities 1 of" in codec.versions()["checkpoints"]
    encoded = codec.encode(image, 1)
    decoded = codec.decode(encoded, (101, 67))
    assert decoded.shape == (101, 67, 3) and decoded.dtype == np.uint8
    header, streams = unpack(encoded)
    assert (header.quality, header.height, header.width) == (1, 101, 67)
    assert len(encoded) == HEADER_SIZE + 4 + sum(map(len, streams))  # rate counts every byte


def test_round_trip_from_the_bytes_alone(folder, image):
    architecture, path = folder
    codec = CompressAIZooCodec("cai", {"architecture": architecture, "weights": str(path)})
    assert codec.available() is None
    codec.warmup()
    assert codec.load_s > 0
    encoded = codec.encode(image, 1)
    decoded = codec.decode(encoded, (101, 67))
    assert decoded.shape == (101, 67, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, codec.decode(encoded, (101, 67)))
    fresh = CompressAIZooCodec("cai", {"architecture": architecture, "weights": str(path)})
    np.testing.assert_array_equal(decoded, fresh.decode(encoded, (101, 67)))


@pytest.mark.parametrize(
    "mangle, error, message",
    [
        (lambda b: b[: len(b) // 2], CompressAIBitstreamError, "truncated or corrupted"),
        (lambda b: b[:-1], CompressAIBitstreamError, "truncated or corrupted"),
        (lambda b: b[:10], CompressAIBitstreamError, "not a compressai-zoo bitstream"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), CompressAIBitstreamError, "truncated or corrupted"),
        (lambda b: b[:3] + bytes([9]) + b[4:], CompressAIBitstreamError, "format 9"),
        (lambda b: b[:6] + bytes([7]) + b[7:], CompressAIBitstreamError, "truncated or corrupted"),
    ],
)
def test_bad_bytes_give_a_clear_error(folder, image, mangle, error, message):
    architecture, path = folder
    codec = CompressAIZooCodec("cai", {"architecture": architecture, "weights": str(path)})
    with pytest.raises(error, match=message):
        codec.decode(mangle(codec.encode(image, 1)), (101, 67))


def resigned(encoded: bytes, height: int, width: int) -> bytes:
    """``encoded`` with its header's image size rewritten and a valid CRC, as a forger would write it."""
    fields = FIELDS.pack(*FIELDS.unpack_from(encoded)[:-2], height, width)
    body = encoded[HEADER_SIZE:]
    return fields + zlib.crc32(fields + body).to_bytes(4, "big") + body


@pytest.mark.parametrize("claimed", [(4096, 4096), (65535, 65535), (101, 68), (1, 1)])
def test_a_header_claiming_another_size_is_refused_before_decoding(folder, image, claimed, monkeypatch):
    """A header rewritten to another size with a valid CRC was decoded at that size (4096x4096: gigabytes
    allocated); now the claim is compared with the expected size before a model is even loaded."""
    architecture, path = folder
    codec = CompressAIZooCodec("cai", {"architecture": architecture, "weights": str(path)})
    encoded = codec.encode(image, 1)
    forged = resigned(encoded, *claimed)
    assert unpack(forged)[0].height == claimed[0]  # a valid bitstream but for its size
    monkeypatch.setattr(codec, "_load", None)  # reaching the model would fail differently
    message = f"compressai-zoo bitstream claims {claimed[1]}x{claimed[0]}, expected 67x101"
    with pytest.raises(CompressAIBitstreamError, match=message):
        codec.decode(forged, (101, 67))


@pytest.mark.parametrize("lengths", [(8, 0), (8, 6), (4, 12), (12, 13)])
def test_stream_lengths_that_no_range_coder_writes_are_refused(lengths):
    packed = pack(Header(2, 1, 1, b"abcd", 10, 12), [b"z" * n for n in lengths])
    with pytest.raises(CompressAIBitstreamError, match="not whole numbers of 32-bit words"):
        unpack(packed)


def test_other_weights_or_another_architecture_are_refused(tmp_path, image):
    own, other = tmp_path / "own-{quality}.pt", tmp_path / "other.pt"
    save_zoo_model(Path(str(own).replace("{quality}", "1")), "bmshj2018-factorized", seed=1, wrap=True)
    save_zoo_model(other, "bmshj2018-factorized", seed=2)
    codec = CompressAIZooCodec("a", {"architecture": "bmshj2018-factorized", "weights": str(own)})
    encoded = codec.encode(image, 1)
    stranger = CompressAIZooCodec("b", {"architecture": "bmshj2018-factorized", "weights": str(other)})
    with pytest.raises(CompressAIBitstreamError, match="not with these"):
        stranger.decode(encoded, (101, 67))
    hyperprior = CompressAIZooCodec("c", {"architecture": "bmshj2018-hyperprior", "weights": str(other)})
    with pytest.raises(CompressAIBitstreamError, match="this codec is bmshj2018-hyperprior"):
        hyperprior.decode(encoded, (101, 67))
    with pytest.raises(ValueError, match="not a bmshj2018-hyperprior checkpoint"):
        hyperprior.encode(image, 1)


def test_missing_quality_and_bad_options_give_clear_errors(hub, image):
    save_zoo_model(hub / FILES["mbt2018-mean"], "mbt2018-mean")
    codec = CompressAIZooCodec("m", {"architecture": "mbt2018-mean"})
    assert codec.available() is None
    with pytest.raises(
        FileNotFoundError, match="quality 3 is not available.*mbt2018-mean-3-723404a8.pth.tar"
    ):
        codec.encode(image, 3)
    encoded = codec.encode(image, 1)
    (hub / FILES["mbt2018-mean"]).rename(hub / "elsewhere.pth.tar")
    with pytest.raises(FileNotFoundError, match="quality 1 is not available"):
        CompressAIZooCodec("m", {"architecture": "mbt2018-mean"}).decode(encoded, (101, 67))
    for quality in (0, 9, 1.5):
        with pytest.raises(ValueError, match="whole number 1..8"):
            codec.encode(image, quality)
    with pytest.raises(ValueError, match="architecture must be one of"):
        CompressAIZooCodec("m", {"architecture": "vtm"})
    with pytest.raises(ValueError, match="unknown option"):
        CompressAIZooCodec("m", {"lambda": 1})
    autoregressive = CompressAIZooCodec("m", {"architecture": "mbt2018", "device": "cuda"})
    assert "CPU only" in autoregressive.available()
    assert CompressAIZooCodec("m", {"architecture": "mbt2018", "device": "auto"}).device == "cpu"


def test_bench_run_codes_present_qualities_and_records_missing_ones_as_errors(tmp_path):
    from click.testing import CliRunner

    from bench.cli import cli

    save_zoo_model(tmp_path / "w" / FILES["bmshj2018-hyperprior"], "bmshj2018-hyperprior")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--codecs",
            f"cai-hyperprior:weights={tmp_path / 'w'}",
            "--images",
            "1",
            "--qualities",
            "cai-hyperprior=1,2",
            "--executor",
            "inline",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv").sort_values("quality")
    assert rows["error"].isna().tolist() == [True, False] and rows["bytes"].iloc[0] > HEADER_SIZE
    assert "bmshj2018-hyperprior-2-93677231.pth.tar" in rows["error"].iloc[1]
    assert rows["load_s"].iloc[0] > 0
