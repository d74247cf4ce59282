"""`bench codecs fetch`: CompressAI checkpoints downloaded from a local HTTP server into a temporary hub cache.

The checkpoints are real zoo-sized models with random weights; compressai's model_urls are patched to
name them with their own SHA-256 prefix, and $BENCH_COMPRESSAI_URL points at the server.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.catalog import load_catalog
from bench.cli import cli
from bench.codec import make_codec
from tests.conftest import QuietHandler, http_server

torch = pytest.importorskip("torch")
zoo = pytest.importorskip("compressai.zoo.image")

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = "bmshj2018-hyperprior"
PUBLISHED = "https://compressai.s3.amazonaws.com/models/v1/"


class Handler(QuietHandler):
    """Serves the folder, records each path asked for; a path in ``server.truncated`` gets half its bytes."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path in self.server.truncated:
            body = Path(self.directory, self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def www(tmp_path, monkeypatch):
    """The server: its folder (files at compressai's paths) and itself; $BENCH_COMPRESSAI_URL points at it."""
    root = tmp_path / "www"
    (root / "models" / "v1").mkdir(parents=True)
    with http_server(root, Handler) as server:
        server.requests, server.truncated = [], set()
        monkeypatch.setenv("BENCH_COMPRESSAI_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        yield root, server


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """The checkpoints folder of an empty torch hub cache (TORCH_HOME in tmp_path)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return Path(torch.hub.get_dir()) / "checkpoints"


@pytest.fixture(scope="module")
def checkpoints() -> list[bytes]:
    """Two zoo-sized quality-1 hyperpriors with random weights and coding tables, as torch.save writes them."""
    saved = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = zoo.model_architectures[ARCHITECTURE](*zoo.cfgs[ARCHITECTURE][1])
        model.update()
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        saved.append(buffer.getvalue())
    return saved


def publish(root: Path, monkeypatch, quality: int, data: bytes) -> str:
    """Serve ``data`` as the checkpoint of ``quality``, named as compressai names it; its file name."""
    name = f"{ARCHITECTURE}-{quality}-{hashlib.sha256(data).hexdigest()[:8]}.pth.tar"
    (root / "models" / "v1" / name).write_bytes(data)
    monkeypatch.setitem(zoo.model_urls[ARCHITECTURE]["mse"], quality, PUBLISHED + name)
    return name


def bench(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result, *parts: str) -> None:
    """Exit status 2 and one error line, the last of stderr (after any progress bar), naming ``parts``."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("bench: error: ")] == lines[-1:], result.stderr
    assert all(part in lines[-1] for part in parts) and "Traceback" not in result.stderr, lines[-1]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_downloads_verifies_and_makes_the_codec_available(www, hub, tmp_path, monkeypatch, checkpoints):
    root, server = www
    names = [publish(root, monkeypatch, quality, data) for quality, data in zip((1, 2), checkpoints)]

    result = bench("codecs", "fetch", "cai-hyperprior", "--qualities", "1,2")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("downloaded and verified") == 2 and str(hub / names[0]) in result.stdout
    assert files_in(hub) == names
    assert [(hub / name).read_bytes() for name in names] == checkpoints
    assert len(server.requests) == 2

    stamps = [(hub / name).stat().st_mtime_ns for name in names]
    result = bench("codecs", "fetch", "cai-hyperprior", "--qualities", "1,2")
    assert result.exit_code == 0 and result.stdout.count("already there, verified") == 2
    assert len(server.requests) == 2 and [(hub / name).stat().st_mtime_ns for name in names] == stamps

    catalog = tmp_path / "catalog"
    catalog.mkdir()
    shutil.copy(REPO / "codecs" / "cai-hyperprior.toml", catalog)
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    listed = bench("codecs")
    assert listed.exit_code == 0 and "cai-hyperprior: available - " in listed.stdout, listed.output

    codec = make_codec("cai-hyperprior", "compressai", load_catalog()["cai-hyperprior"].options)
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(image, 2), (40, 56)).shape == image.shape


def test_fetch_honours_a_weights_folder(www, hub, tmp_path, monkeypatch, checkpoints):
    root, _ = www
    name = publish(root, monkeypatch, 1, checkpoints[0])
    folder = tmp_path / "weights"
    folder.mkdir()
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    entry = (REPO / "codecs" / "cai-hyperprior.toml").read_text()
    (catalog / "cai-hyperprior.toml").write_text(entry.replace('weights = ""', f'weights = "{folder}"'))
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    assert bench("codecs", "fetch", "cai-hyperprior", "--qualities", "1").exit_code == 0
    assert files_in(folder) == [name] and files_in(hub) == []


@pytest.mark.parametrize("fault", ["corrupted", "truncated"])
def test_a_bad_download_is_one_line_and_leaves_nothing(www, hub, monkeypatch, checkpoints, fault):
    root, server = www
    name = publish(root, monkeypatch, 1, checkpoints[0])
    if fault == "corrupted":
        (root / "models" / "v1" / name).write_bytes(checkpoints[0][:-1] + b"x")
    else:
        server.truncated.add(f"/models/v1/{name}")
    result = bench("codecs", "fetch", "cai-hyperprior", "--qualities", "1")
    assert_one_line_error(result, fault, f"/models/v1/{name}", f"copy {name} to {hub / name}")
    assert files_in(hub) == []


def test_a_file_that_fails_verification_is_refused_and_kept(www, hub, monkeypatch, checkpoints):
    root, server = www
    name = publish(root, monkeypatch, 1, checkpoints[0])
    hub.mkdir(parents=True)
    (hub / name).write_bytes(b"not this checkpoint")
    result = bench("codecs", "fetch", "cai-hyperprior", "--qualities", "1")
    assert_one_line_error(result, f"{hub / name} exists", "delete it to fetch again")
    assert files_in(hub) == [name] and (hub / name).read_bytes() == b"not this checkpoint"
    assert server.requests == []


def test_offline_is_one_line(hub, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("BENCH_COMPRESSAI_URL", f"http://127.0.0.1:{port}")
    result = bench("codecs", "fetch", "cai-mbt2018-mean", "--qualities", "3")
    assert_one_line_error(
        result, f"http://127.0.0.1:{port}/models/v1/mbt2018-mean-3-723404a8.pth.tar", "failed"
    )
    assert files_in(hub) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("jpeg",),
            "jpeg is not a CompressAI zoo entry: bench codecs fetch downloads cai-hyperprior, cai-mbt2018-mean",
        ),
        (("nosuch",), "nosuch is not in the catalog"),
        (("cai-hyperprior", "--qualities", "9"), "no quality 9"),
        (("cai-hyperprior", "--qualities", "x"), "--qualities 'x'"),
    ],
)
def test_what_cannot_be_fetched_is_one_line(hub, args, message):
    assert_one_line_error(bench("codecs", "fetch", *args), message)
    assert files_in(hub) == []
