"""Files in a run directory (issue 15, item 2): no link inside it is followed, every file is written
atomically, and a filesystem failure (full or read-only disk, a path under a file, a file that is not
a store) is one line that loses nothing written before."""

from __future__ import annotations

import errno
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench.cli import cli
from bench.files import FilesystemError
from bench.rundir import keep_bitstream
from bench.runs import load_run

LINK = "is a symbolic link: bench does not follow links inside its folders; remove it"
KEPT = "(earlier results and files are kept as they were)"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    """The one `bench: error:` line of a command that exited 2 without a traceback."""
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()[:64, :96]).save(folder / "a.png")
    Image.fromarray(data.chelsea()[:64, :96]).save(folder / "b.png")
    return folder


def jpeg_args(photos: Path, out: Path, qualities: str = "30,60,90") -> list:
    return ["run", "--codecs", "jpeg", "--dataset", photos, "--qualities", f"jpeg={qualities}",
            "--executor", "inline", "--out", out]  # fmt: skip


def run_jpeg(photos: Path, out: Path, *extra, qualities: str = "30,60,90"):
    result = invoke(*jpeg_args(photos, out, qualities), *extra)
    assert result.exit_code == 0, result.output
    return result


def stored(database: Path) -> list[tuple]:
    """Every row's key and PSNR, read independently of bench."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        query = "SELECT image_sha256, config_hash, quality, bytes, psnr_rgb FROM results ORDER BY 1, 2, 3"
        return connection.execute(query).fetchall()
    finally:
        connection.close()


# --- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".lock", "results.csv", "run.json.tmp"])
def test_a_link_planted_in_a_run_directory_is_refused_and_its_target_untouched(photos, tmp_path, name):
    out = tmp_path / "run"
    run_jpeg(photos, out, "--metrics", "psnr_rgb")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(victim)
    line = error_line(invoke(*jpeg_args(photos, out), "--metrics", "psnr_rgb,psnr_y"))
    assert line == f"bench: error: {out / name} {LINK}"
    assert victim.read_text() == "precious\n" and (out / name).is_symlink()


def test_a_linked_bitstream_folder_is_not_followed(photos, tmp_path):
    out = tmp_path / "run"
    run_jpeg(photos, out, "--keep-bitstreams", "--metrics", "psnr_rgb")
    (folder,) = (out / "bitstreams").iterdir()
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    line = error_line(invoke(*jpeg_args(photos, out), "--keep-bitstreams", "--metrics", "psnr_rgb,psnr_y"))
    assert line == f"bench: error: {folder} {LINK}"
    key = ("f" * 64, "jpeg", folder.name, 50.0)  # written by the run's code path, not into the link
    with pytest.raises(FilesystemError, match="is a symbolic link"):
        keep_bitstream(out / "bitstreams", key, b"bytes")
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_the_reading_side_follows_no_link_and_waits_on_no_fifo(photos, tmp_path):
    out = tmp_path / "run"
    run_jpeg(photos, out, "--metrics", "psnr_rgb")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "results.csv").symlink_to(out / "results.csv")
    with pytest.raises(FilesystemError) as refused:
        load_run(shared)
    assert str(refused.value) == f"{shared / 'results.csv'} {LINK}"
    (shared / "results.csv").unlink()
    (shared / "results.csv").write_bytes((out / "results.csv").read_bytes())
    os.mkfifo(shared / "results.sqlite")  # opening it would wait for a writer
    assert len(load_run(shared).rows) == 6


# --- not a store, not a folder --------------------------------------------------------------------


def garbage(database: Path) -> None:
    database.write_bytes(os.urandom(3000))


def truncated(database: Path) -> None:
    database.write_bytes(database.read_bytes()[:5000])


@pytest.mark.parametrize(
    "damage, reason", [(garbage, "file is not a database"), (truncated, "database disk image is malformed")]
)
@pytest.mark.parametrize("where", ["out", "cache"])
def test_a_results_sqlite_that_is_not_a_store_is_one_line_and_left_as_it_is(
    photos, tmp_path, damage, reason, where
):
    out, cache = tmp_path / "run", tmp_path / "cache"
    run_jpeg(photos, out, "--cache", cache, "--metrics", "psnr_rgb")
    database = (out if where == "out" else cache) / "results.sqlite"
    damage(database)
    before = database.read_bytes()
    again = out if where == "out" else tmp_path / "other"
    line = error_line(invoke(*jpeg_args(photos, again), "--cache", cache, "--metrics", "psnr_rgb"))
    assert line == f"bench: error: {database}: not a codec-bench results database ({reason})"
    assert database.read_bytes() == before


def test_out_or_cache_under_a_file_is_one_line(photos, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("a file\n")
    line = error_line(invoke(*jpeg_args(photos, afile / "run")))
    assert line == f"bench: error: {afile / 'run'}: cannot create the folder: Not a directory"
    line = error_line(invoke(*jpeg_args(photos, tmp_path / "run"), "--cache", afile / "cache"))
    assert line == f"bench: error: {afile / 'cache'}: cannot create the folder: Not a directory"
    assert afile.read_text() == "a file\n"


@pytest.mark.parametrize("command", ["report", "export", "verify"])
def test_the_other_writers_follow_no_link_and_fail_in_one_line(command, photos, tmp_path):
    """bench report --out, bench export --out and bench verify --write-bitstreams write as a run does."""
    run = tmp_path / "run"
    run_jpeg(photos, run, "--metrics", "psnr_rgb")
    out, written = (
        tmp_path / "out",
        {"report": "index.html", "export": "jpeg.json", "verify": "manifest.json"},
    )
    args = {
        "report": ["report", run, "--no-visual", "--metrics", "psnr_rgb", "--out"],
        "export": ["export", run, "--out"],
        "verify": ["verify", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=50",
                   "--variants", "1-thread", "--write-bitstreams"],
    }[command]  # fmt: skip
    afile = tmp_path / "afile"
    afile.write_text("a file\n")
    line = error_line(invoke(*args, afile / "out"))
    assert line.startswith(f"bench: error: {afile / 'out'}") and line.endswith("Not a directory")
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (out / written[command]).symlink_to(victim)
    assert error_line(invoke(*args, out)) == f"bench: error: {out / written[command]} {LINK}"
    assert victim.read_text() == "precious\n" and afile.read_text() == "a file\n"


# --- read-only and full disks ---------------------------------------------------------------------


def mount(*args) -> bool:
    """Run mount(8) with ``args``; False where this process may not mount (not root, a container)."""
    try:
        return subprocess.run(["mount", *map(str, args)], check=False, capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def test_a_read_only_run_directory_is_one_line(photos, tmp_path):
    shared = tmp_path / "shared"
    run_jpeg(photos, shared / "run", "--metrics", "psnr_rgb")
    bound = mount("--bind", shared, shared)
    if bound and not mount("-o", "remount,ro,bind", shared):
        subprocess.run(["umount", shared], check=True)
        bound = False
    if not bound:
        shared.chmod(0o555)
        (shared / "run").chmod(0o555)
    try:
        if os.access(shared, os.W_OK) and not bound:
            pytest.skip("this process writes into read-only folders (root) and may not mount a read-only one")
        reason = "Read-only file system" if bound else "Permission denied"
        line = error_line(invoke(*jpeg_args(photos, shared / "new")))
        assert line == f"bench: error: {shared / 'new'}: cannot create the folder: {reason}"
        line = error_line(invoke(*jpeg_args(photos, shared / "run"), "--metrics", "psnr_rgb,psnr_y"))
        assert line == f"bench: error: {shared / 'run' / '.lock'}: cannot write: {reason}"
    finally:
        if bound:
            subprocess.run(["umount", shared], check=True)
        else:
            shared.chmod(0o755)
            (shared / "run").chmod(0o755)


def run_limited(limit: int, args: list, cwd: Path) -> subprocess.CompletedProcess:
    """`bench` ``args`` in a process whose files cannot grow past ``limit`` bytes: a write beyond fails
    with EFBIG (SIGXFSZ ignored), as on a full disk."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    environment = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "bench.cli", *map(str, args)]
    return subprocess.run(
        command, check=False, preexec_fn=limited, capture_output=True, text=True, cwd=cwd, env=environment
    )


def one_error_line(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 2 and "Traceback" not in process.stderr, process.stderr
    (line,) = [line for line in process.stderr.splitlines() if line.startswith("bench: error:")]
    return line


def test_a_full_disk_keeps_results_csv_run_json_and_every_stored_row(photos, tmp_path):
    out = tmp_path / "run"
    qualities = ",".join(str(q) for q in range(1, 101))  # 200 rows: a results.csv of some 60 kB
    run_jpeg(photos, out, "--metrics", "psnr_rgb", qualities=qualities)
    csv, manifest, rows = (
        (out / "results.csv").read_bytes(),
        (out / "run.json").read_bytes(),
        stored(out / "results.sqlite"),
    )
    assert len(rows) == 200 and len(csv) > 50_000 and len(manifest) < 10_000
    more = [*jpeg_args(photos, out, qualities), "--metrics", "psnr_rgb,psnr_y"]
    # run.json (a few kB) cannot be written
    line = one_error_line(run_limited(1000, more, tmp_path))
    assert line == f"bench: error: {out / 'run.json'}: cannot write: File too large {KEPT}"
    assert (out / "run.json").read_bytes() == manifest and (out / "results.csv").read_bytes() == csv
    # run.json can, SQLite's journal soon cannot, and results.csv cannot
    line = one_error_line(run_limited(40_000, more, tmp_path))
    assert line == f"bench: error: {out / 'results.sqlite'}: cannot write: disk I/O error {KEPT}"
    assert (out / "results.csv").read_bytes() == csv
    assert stored(out / "results.sqlite") == rows
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    run_jpeg(photos, out, "--metrics", "psnr_rgb,psnr_y", qualities=qualities)  # and the run resumes
    assert stored(out / "results.sqlite") == rows


def test_a_full_tmpfs_keeps_every_file(photos, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", disk):
        pytest.skip("this process may not mount a tmpfs (not root, or a container without CAP_SYS_ADMIN)")
    try:
        out = disk / "run"
        run_jpeg(photos, out, "--metrics", "psnr_rgb")
        csv, manifest, rows = (
            (out / "results.csv").read_bytes(),
            (out / "run.json").read_bytes(),
            stored(out / "results.sqlite"),
        )
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, bytes(65536)):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(filler)
        line = error_line(invoke(*jpeg_args(photos, out), "--metrics", "psnr_rgb,psnr_y"))
        assert line == f"bench: error: {out / 'run.json'}: cannot write: No space left on device {KEPT}"
        assert (out / "run.json").read_bytes() == manifest and (out / "results.csv").read_bytes() == csv
        assert stored(out / "results.sqlite") == rows
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", disk], check=True)
