"""bench.datasets and `bench datasets`: manifests, data directory, fetch/import/verify, safe extraction.

Downloads are tested against a real HTTP server on 127.0.0.1 and test manifests in a temporary
BENCH_DATASETS_DIR; the Kodak tests read $BENCH_DATA_DIR/kodak (read-only) through `kodak_dir`.
"""

from __future__ import annotations

import io
import shutil
import socket
import stat
import tarfile
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench import datasets as ds
from bench import fetch
from bench.cli_datasets import datasets as datasets_cli
from bench.errors import UserError
from bench.images import pixel_sha256
from tests.conftest import QuietHandler, http_server

RNG = np.random.default_rng(1)


# --- helpers -------------------------------------------------------------------------------------


def make_images(folder: Path, n: int = 3) -> dict[str, str]:
    """Write n small PNG images; return file name -> pixel hash."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for i in range(n):
        rgb = RNG.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
        hashes[f"img{i}.png"] = pixel_sha256(rgb)
    return hashes


def write_manifest(
    folder: Path,
    name: str,
    source: dict[str, str],
    hashes: dict[str, str] | None = None,
    count: int | None = None,
) -> None:
    lines = [f'name = "{name}"', f'title = "test dataset {name}"']
    if hashes:
        lines.append(f"count = {len(hashes)}")
    else:
        lines += [f"count = {count}", "hashes_pinned = false", "pixel_sha256 = {}"]
    lines += ["[source]", *(f'{k} = "{v}"' for k, v in source.items())]
    if hashes:
        lines += ["[pixel_sha256]", *(f'"{k}" = "{v}"' for k, v in hashes.items())]
    (folder / f"{name}.toml").write_text("\n".join(lines) + "\n")


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of everything under folder."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


class Handler(QuietHandler):
    """Serves the test folder; /truncated/... promises more bytes than it sends."""

    def do_GET(self):
        if self.path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def www(tmp_path):
    """(folder served, base URL) of a local HTTP server."""
    root = tmp_path / "www"
    root.mkdir()
    with http_server(root, Handler) as server:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def manifest_dir(tmp_path, monkeypatch):
    folder = tmp_path / "manifests"
    folder.mkdir()
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(folder))
    return folder


@pytest.fixture
def data_dir_tmp(tmp_path):
    return tmp_path / "data"


def assert_nothing_left(data_dir: Path) -> None:
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def add_archive_images(add, hashes_folder: Path) -> None:
    """Add pack/images/* (the member), plus files that must not be extracted."""
    for path in sorted(hashes_folder.iterdir()):
        add(f"pack/images/{path.name}", path.read_bytes())
    add("pack/README.txt", b"read me")
    add("pack/other/img0.png", (hashes_folder / "img1.png").read_bytes())
    add("__MACOSX/pack/images/._img0.png", b"apple double")


def build_zip(path: Path, images: Path | None, extra: list[zipfile.ZipInfo | tuple[str, bytes]] = ()) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        if images:
            add_archive_images(zf.writestr, images)
        for item in extra:
            zf.writestr(*item) if isinstance(item, tuple) else zf.writestr(item, b"../../../outside.png")


def build_tar(path: Path, images: Path | None, extra: list[tarfile.TarInfo] = ()) -> None:
    with tarfile.open(path, "w:gz") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        if images:
            add_archive_images(add, images)
        for info in extra:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)


# --- data directory, manifests, opening --------------------------------------------------------------


def test_default_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert ds.default_data_dir() == tmp_path / "home" / ".cache" / "codec-bench" / "datasets"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.default_data_dir() == tmp_path / "xdg" / "codec-bench" / "datasets"
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "env"))
    assert ds.default_data_dir() == tmp_path / "env"
    assert ds.default_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert ds.default_data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_repository_manifests():
    found = ds.manifests()
    assert {"sample", "kodak", "clic2020-pro-valid", "tecnick", "div2k-valid"} <= set(found)
    kodak = found["kodak"]
    assert kodak.count == 24 and kodak.hashes_pinned and kodak.licence and kodak.citation
    assert kodak.source.url == "https://r0k.us/graphics/kodak/kodak/"
    assert sorted(kodak.pixel_sha256) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    for name, count in [("clic2020-pro-valid", 41), ("tecnick", 100), ("div2k-valid", 100)]:
        m = found[name]
        assert m.source.kind == "archive" and m.source.url and m.source.member and m.count == count
        assert not m.hashes_pinned and m.note


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('name = "other"\ncount = 1\n[source]\nkind = "archive"\nurl = "u"\nmember = "m"\n', "differs"),
        ('name = "broken"\ncolour = 1\n[source]\nkind = "files"\n', "unknown keys colour"),
        (
            'name = "broken"\n[source]\nkind = "files"\nurl = "http://x/"\n[pixel_sha256]\n"a.png" = "00"\n',
            "hex",
        ),
        (
            'name = "broken"\n[source]\nkind = "files"\nurl = "http://x/"\n[pixel_sha256]\n"../a.png" = "00"\n',
            "plain",
        ),
        ('name = "broken"\ncount = 3\n[source]\nkind = "files"\nurl = "http://x/"\n', "must list its images"),
        ("name = ", "TOMLDecodeError"),
    ],
)
def test_bad_manifest_is_a_user_error(manifest_dir, text, problem):
    (manifest_dir / "broken.toml").write_text(text)
    with pytest.raises(UserError, match=f"bad dataset manifest .*broken.toml: .*{problem}"):
        ds.manifests()


def test_sample_opens_and_scans_without_network(tmp_path, monkeypatch):
    def no_network(*args):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    nowhere = tmp_path / "nowhere"
    dataset = ds.open_dataset("sample", nowhere)
    infos, bad = ds.scan(dataset)
    assert bad == [] and len(infos) == len(dataset.files) == 5
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert all(min(i.height, i.width) >= 161 for i in infos)
    assert not nowhere.exists()
    assert len(ds.scan(dataset, limit=2)[0]) == 2


def test_open_dataset_errors(tmp_path, manifest_dir):
    write_manifest(
        manifest_dir, "tiny", {"kind": "files", "url": "http://127.0.0.1:9/"}, make_images(tmp_path / "x")
    )
    with pytest.raises(UserError, match=r"bench datasets fetch tiny.*bench datasets import tiny"):
        ds.open_dataset("tiny", tmp_path / "data")
    with pytest.raises(UserError, match="neither a known dataset"):
        ds.open_dataset(str(tmp_path / "absent"), tmp_path / "data")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="no image files"):
        ds.open_dataset(str(tmp_path / "empty"), tmp_path / "data")


def test_plain_folder_scan_reports_bad_files(tmp_path):
    make_images(tmp_path / "mine")
    (tmp_path / "mine" / "broken.png").write_bytes(b"")
    dataset = ds.open_dataset(str(tmp_path / "mine"), tmp_path / "data")
    infos, bad = ds.scan(dataset)
    assert dataset.name == "mine" and dataset.manifest is None and len(infos) == 3
    assert [(b.path.name, b.reason) for b in bad] == [("broken.png", "empty file")]


# --- Kodak ($BENCH_DATA_DIR, read-only) --------------------------------------------------------------------


def test_kodak_verifies_and_nothing_is_written(kodak_dir):
    before = tree(kodak_dir), sorted(kodak_dir.parent.iterdir())
    infos, bad = ds.scan(ds.open_dataset("kodak", kodak_dir.parent))
    result = CliRunner().invoke(datasets_cli, ["verify", "kodak", "--data-dir", str(kodak_dir.parent)])
    assert bad == [] and len(infos) == 24
    assert result.exit_code == 0 and "24 images verified" in result.stdout
    assert (tree(kodak_dir), sorted(kodak_dir.parent.iterdir())) == before


def test_kodak_rejects_a_wrong_image_and_accepts_a_reencoded_one(kodak_dir, tmp_path):
    copy = tmp_path / "data" / "kodak"
    shutil.copytree(kodak_dir, copy)
    shutil.copyfile(kodak_dir / "kodim06.png", copy / "kodim05.png")
    Image.open(kodak_dir / "kodim01.png").save(copy / "kodim01.png", compress_level=1)
    (copy / "kodim24.png").unlink()
    shutil.copyfile(kodak_dir / "kodim02.png", copy / "extra.png")
    infos, bad = ds.scan(ds.open_dataset("kodak", tmp_path / "data"))
    reasons = {b.path.name: b.reason for b in bad}
    assert set(reasons) == {"kodim05.png", "kodim24.png", "extra.png"}
    assert "pixels differ" in reasons["kodim05.png"] and reasons["kodim24.png"] == "missing"
    assert "unexpected" in reasons["extra.png"]
    assert "kodim01.png" in {i.name for i in infos}

    (copy / "extra.png").unlink()
    shutil.copyfile(kodak_dir / "kodim24.png", copy / "kodim24.png")
    data_dir = tmp_path / "imported"
    with pytest.raises(UserError, match=r"1 problem\(s\).*kodim05.png: pixels differ"):
        fetch.import_dataset("kodak", copy, data_dir)
    assert_nothing_left(data_dir)


def test_kodak_import(kodak_dir, tmp_path):
    before = tree(kodak_dir)
    dataset = fetch.import_dataset("kodak", kodak_dir, tmp_path / "data")
    assert dataset.root == tmp_path / "data" / "kodak" and len(dataset.files) == 24
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["kodak"]
    assert tree(kodak_dir) == before


# --- fetch from a local server -----------------------------------------------------------------------


def test_fetch_per_file_dataset_with_progress(www, manifest_dir, data_dir_tmp, tmp_path, capsys):
    root, base = www
    hashes = make_images(root / "files")
    write_manifest(manifest_dir, "perfile", {"kind": "files", "url": f"{base}/files/"}, hashes)
    dataset = fetch.fetch("perfile", data_dir_tmp, progress=True)
    assert [p.name for p in dataset.files] == sorted(hashes)
    assert sorted(p.name for p in data_dir_tmp.iterdir()) == ["perfile"]
    assert "img0.png" in capsys.readouterr().err  # the progress bar
    assert ds.scan(ds.open_dataset("perfile", data_dir_tmp))[1] == []


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_fetch_archive_dataset(www, manifest_dir, data_dir_tmp, tmp_path, kind):
    root, base = www
    hashes = make_images(tmp_path / "originals")
    archive = root / f"pack.{kind}"
    (build_zip if kind == "zip" else build_tar)(archive, tmp_path / "originals")
    write_manifest(
        manifest_dir,
        "pinned",
        {"kind": "archive", "url": f"{base}/{archive.name}", "member": "images"},
        hashes,
    )
    write_manifest(
        manifest_dir,
        "counted",
        {"kind": "archive", "url": f"{base}/{archive.name}", "member": "pack/images"},
        count=3,
    )
    for name in ("pinned", "counted"):
        dataset = fetch.fetch(name, data_dir_tmp)
        assert [p.name for p in dataset.files] == sorted(hashes)  # README, other/ and ._ files left out
        assert sorted(p.name for p in dataset.root.iterdir()) == sorted(hashes)
    assert sorted(p.name for p in data_dir_tmp.iterdir()) == ["counted", "pinned"]
    with pytest.raises(UserError, match="already exists"):
        fetch.fetch("pinned", data_dir_tmp)


def test_fetch_checks_archive_checksum_and_count(www, manifest_dir, data_dir_tmp, tmp_path):
    root, base = www
    make_images(tmp_path / "originals")
    build_zip(root / "pack.zip", tmp_path / "originals")
    url = f"{base}/pack.zip"
    write_manifest(
        manifest_dir, "sum", {"kind": "archive", "url": url, "member": "images", "sha256": "0" * 64}, count=3
    )
    write_manifest(manifest_dir, "four", {"kind": "archive", "url": url, "member": "images"}, count=4)
    with pytest.raises(UserError, match="archive sha256"):
        fetch.fetch("sum", data_dir_tmp)
    with pytest.raises(UserError, match="expected 4 images, found 3"):
        fetch.fetch("four", data_dir_tmp)
    assert_nothing_left(data_dir_tmp)


def outside_link_zip() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("pack/images/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def tar_entry(name: str, kind: bytes, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


EVIL = f"/tmp/codec-bench-evil-{uuid.uuid4().hex}.png"
MALICIOUS = {
    "zip ..": ("zip", [("pack/images/../../../evil.png", b"x")], "'..'"),
    "zip absolute": ("zip", [(EVIL, b"x")], "absolute path"),
    "zip symlink": ("zip", [outside_link_zip()], "outside the archive"),
    "tar ..": ("tar", [tar_entry("pack/images/../../../evil.png", tarfile.REGTYPE, size=1)], "'..'"),
    "tar absolute": ("tar", [tar_entry(EVIL, tarfile.REGTYPE, size=1)], "absolute path"),
    "tar symlink": (
        "tar",
        [tar_entry("pack/images/link.png", tarfile.SYMTYPE, "../../../outside")],
        "outside",
    ),
    "tar hardlink": ("tar", [tar_entry("pack/images/hard.png", tarfile.LNKTYPE, "../outside")], "outside"),
    "tar device": ("tar", [tar_entry("pack/images/dev.png", tarfile.CHRTYPE)], "device"),
}


@pytest.mark.parametrize("case", MALICIOUS)
def test_malicious_archive_is_refused(www, manifest_dir, data_dir_tmp, tmp_path, case):
    root, base = www
    kind, extra, why = MALICIOUS[case]
    make_images(tmp_path / "originals")
    archive = root / ("bad.zip" if kind == "zip" else "bad.tar.gz")
    (build_zip if kind == "zip" else build_tar)(archive, tmp_path / "originals", extra)
    write_manifest(
        manifest_dir, "bad", {"kind": "archive", "url": f"{base}/{archive.name}", "member": "images"}, count=3
    )
    before = tree(tmp_path)
    with pytest.raises(UserError, match=f"refusing an unsafe archive.*{why}"):
        fetch.fetch("bad", data_dir_tmp)
    assert_nothing_left(data_dir_tmp)
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("data")} == before
    assert not Path(EVIL).exists()


@pytest.mark.parametrize(
    ("path", "message"), [("missing.zip", "HTTP 404"), ("truncated/pack.zip", "truncated")]
)
def test_failed_download_leaves_nothing(www, manifest_dir, data_dir_tmp, path, message):
    _, base = www
    write_manifest(
        manifest_dir, "gone", {"kind": "archive", "url": f"{base}/{path}", "member": "images"}, count=3
    )
    with pytest.raises(UserError, match=message):
        fetch.fetch("gone", data_dir_tmp)
    assert_nothing_left(data_dir_tmp)


def test_fetch_of_a_non_archive_is_refused(www, manifest_dir, data_dir_tmp):
    root, base = www
    (root / "page.html").write_text("<html>download page</html>")
    write_manifest(
        manifest_dir, "html", {"kind": "archive", "url": f"{base}/page.html", "member": "x"}, count=1
    )
    with pytest.raises(UserError, match="not a zip or tar archive"):
        fetch.fetch("html", data_dir_tmp)
    assert_nothing_left(data_dir_tmp)


# --- import and the CLI ------------------------------------------------------------------------------


def test_import_refuses_a_wrong_image(manifest_dir, data_dir_tmp, tmp_path):
    hashes = make_images(tmp_path / "copy")
    write_manifest(manifest_dir, "mine", {"kind": "files", "url": "http://127.0.0.1:9/"}, hashes)
    shutil.copyfile(tmp_path / "copy" / "img0.png", tmp_path / "copy" / "img1.png")
    with pytest.raises(UserError, match="img1.png: pixels differ"):
        fetch.import_dataset("mine", tmp_path / "copy", data_dir_tmp)
    assert_nothing_left(data_dir_tmp)


def test_cli(manifest_dir, data_dir_tmp, tmp_path):
    hashes = make_images(tmp_path / "copy")
    write_manifest(manifest_dir, "mine", {"kind": "files", "url": "http://127.0.0.1:9/"}, hashes)
    write_manifest(
        manifest_dir, "other", {"kind": "archive", "url": "http://127.0.0.1:9/x.zip", "member": "x"}, count=2
    )
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(datasets_cli, [*args, "--data-dir", str(data_dir_tmp)])

    result = run("list")
    assert result.exit_code == 0
    assert "mine" in result.stdout and "missing" in result.stdout and str(data_dir_tmp) in result.stdout

    for args, message in [
        (("verify", "mine"), "bench datasets fetch mine"),
        (("fetch", "nosuch"), "unknown dataset 'nosuch'"),
        (("verify", str(tmp_path / "absent")), "neither a known dataset"),
    ]:
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("bench: error: ") and result.stderr.count("\n") == 1
        assert message in result.stderr

    result = run("import", "mine", str(tmp_path / "copy"))
    assert result.exit_code == 0 and "3 images verified" in result.stdout
    result = run("list", "--verify")
    assert result.exit_code == 0 and "verified" in result.stdout

    (data_dir_tmp / "mine" / "img2.png").write_bytes(b"")
    result = run("verify", "mine")
    assert result.exit_code == 2
    assert "img2.png: empty file" in result.stdout
    assert result.stderr.splitlines()[-1] == f"bench: error: mine: 1 problem(s) in {data_dir_tmp / 'mine'}"
    assert run("import", "mine", str(tmp_path / "copy")).exit_code == 2  # already there
