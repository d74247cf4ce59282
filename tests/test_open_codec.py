"""One checked way to open a codec (bench.codec.open_codec): the worker, the planner and the visual
re-encode refuse a codec with the same one-line reason, and a process keeps one instance per
configuration. Executors are chosen by name; the planner does not load Dask."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import bench
from bench import codec as hooks
from bench.catalog import CatalogEntry, load_catalog
from bench.codec import CodecUnavailable, check_codec, open_codec
from bench.errors import UserError
from bench.executors import InlineExecutor, LocalExecutor, make_executor
from bench.report.visual import visual_comparisons
from bench.runner import RunRequest, _tasks, resolve
from bench.runs import combined_rows, load_runs
from bench.worker import _codec, run_task

REPO = Path(__file__).resolve().parent.parent
MISSING = "No module named 'no_such_module'"  # the reason of a codec whose adapter cannot be imported


def entry(name: str, adapter: str, **options) -> CatalogEntry:
    return CatalogEntry.from_dict(
        {"name": name, "adapter": adapter, "description": "test", "reference": "-",
         "quality_label": "JPEG quality", "qualities": [30, 70], "options": options}
    )  # fmt: skip


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()[:96, :128]).save(folder / "astronaut.png")
    return folder


@pytest.fixture(scope="module")
def jpeg_run(photos, tmp_path_factory) -> Path:
    """A finished inline run of jpeg at qualities 30 and 70."""
    out = tmp_path_factory.mktemp("run")
    bench.run("jpeg", str(photos), out=str(out), executor="inline", qualities={"jpeg": [30, 70]})
    return out


def visual_notes(run_dir: Path, change) -> list[str]:
    """The visual comparison's notes on a copy of ``run_dir`` whose run.json jpeg entry ``change`` edits."""
    document = json.loads((run_dir / "run.json").read_text())
    change(document["config"]["codecs"][0])
    copy = run_dir.parent / f"{run_dir.name}-changed"
    copy.mkdir(exist_ok=True)
    (copy / "run.json").write_text(json.dumps(document))
    (copy / "results.sqlite").write_bytes((run_dir / "results.sqlite").read_bytes())
    runs = load_runs([copy])
    return visual_comparisons(runs, combined_rows(runs), [1.0])[1]


def test_an_unavailable_codec_is_refused_with_the_same_reason_everywhere(
    photos, jpeg_run, tmp_path, monkeypatch
):
    missing = entry("gone", "no_such_module:factory")
    line = f"gone is unavailable: {MISSING}"
    assert check_codec(missing) == (MISSING, {})
    with pytest.raises(CodecUnavailable) as raised:
        open_codec(missing)
    assert str(raised.value) == line

    # the planner: refused, or left out with a note
    jpeg = load_catalog()["jpeg"]
    request = RunRequest(dataset=str(photos), entries=[jpeg, missing], out=str(tmp_path / "r"))
    with pytest.raises(UserError) as refused:
        resolve(request)
    assert str(refused.value) == f"{line} (--skip-unavailable runs the others)"
    plan = resolve(dataclasses.replace(request, skip_unavailable=True))
    assert f"left out: {line}" in plan.notes

    # the worker: an error row
    task = dataclasses.replace(_tasks(plan)[0], entry=missing.to_dict())
    assert run_task(task)["error"] == f"CodecUnavailable: {line}"

    # the visual re-encode: a note (a run.json's module adapter is tried only when the local catalog has it)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "gone.toml").write_text(
        'name = "gone"\nadapter = "no_such_module:factory"\ndescription = "test"\nreference = "-"\n'
        'quality_label = "q"\nqualities = [50]\n'
    )
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    notes = visual_notes(jpeg_run, lambda codec: codec["entry"].update(name="gone", adapter=missing.adapter))
    assert f"jpeg: not re-encoded for the visual comparison: {line}" in notes


def test_versions_other_than_the_runs_are_refused_with_the_same_reason_everywhere(photos, jpeg_run, tmp_path):
    plan = resolve(RunRequest("jpeg", str(photos), qualities={"jpeg": [30]}, out=str(tmp_path / "r")))
    (codec,) = plan.codecs
    library = next(iter(codec.versions))
    expected = codec.versions | {library: "0.0"}
    reason = f"its versions differ from the run's: {library} {codec.versions[library]} here, 0.0 planned"
    line = f"jpeg is unavailable: {reason}"
    assert check_codec(codec.entry, expected) == (reason, {})
    assert check_codec(codec.entry, codec.versions) == (None, codec.versions)

    task = dataclasses.replace(_tasks(plan)[0], versions=expected)
    assert run_task(task)["error"] == f"CodecUnavailable: {line}"

    notes = visual_notes(jpeg_run, lambda config: config["versions"].update({library: "0.0"}))
    assert f"jpeg: not re-encoded for the visual comparison: {line}" in notes
    assert not any("re-encoded" in note for note in visual_notes(jpeg_run, lambda config: None))


def test_bad_options_are_refused_in_one_line_even_with_skip_unavailable(photos, tmp_path):
    with pytest.raises(CodecUnavailable, match=r"^jpeg is unavailable: bad options \(jpeg: unknown option"):
        open_codec(load_catalog()["jpeg"].with_options({"no_such_option": 1}))
    request = RunRequest("jpeg:no_such_option=1", str(photos), skip_unavailable=True, out=str(tmp_path))
    with pytest.raises(UserError, match=r"^jpeg is unavailable: bad options \(jpeg: unknown option"):
        resolve(request)


def test_one_instance_per_configuration_per_process(photos, tmp_path):
    jpeg = load_catalog()["jpeg"]
    other = jpeg.with_options({"subsampling": "444"})
    versions = check_codec(jpeg)[1]
    assert open_codec(jpeg) is open_codec(jpeg) is open_codec(jpeg, versions)
    assert open_codec(jpeg) is open_codec(CatalogEntry.from_dict(jpeg.to_dict()))  # as a task carries it
    assert open_codec(other) is not open_codec(jpeg)

    # the worker: two configurations of one codec name get two instances, each task of one the same
    plan = resolve(RunRequest("jpeg,jpeg:subsampling=444", str(photos), out=str(tmp_path)))
    tasks = _tasks(plan)
    by_config = {
        task.config_hash: {id(_codec(t)) for t in tasks if t.config_hash == task.config_hash}
        for task in tasks
    }
    assert len(by_config) == 2 and all(len(ids) == 1 for ids in by_config.values())
    assert len(set.union(*by_config.values())) == 2


class Bare:
    """A codec with the contract only."""

    name = "bare"

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        self.encoded = image.shape
        return b"x"

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        return np.zeros((*shape, 3), np.uint8)


class Hooked(Bare):
    device = "cuda:0"
    load_s = 1.5

    def warmup(self) -> None:
        self.warm = True

    def sync(self) -> None:
        self.synced = True

    def complexity(self) -> dict[str, float]:
        return {"kmac_px_enc": 1.0, "kmac_px_dec": 2.0}


def test_the_optional_hooks_and_their_defaults():
    bare, hooked = Bare(), Hooked()
    hooks.warm_up(bare, np.zeros((100, 120, 3), np.uint8), 50)
    assert bare.encoded == (hooks.WARMUP_SIDE, hooks.WARMUP_SIDE, 3)  # a small crop's round trip
    hooks.warm_up(hooked, np.zeros((100, 120, 3), np.uint8), 50)
    assert hooked.warm and not hasattr(hooked, "encoded")
    hooks.sync(bare)
    hooks.sync(hooked)
    assert hooked.synced
    assert (hooks.device(bare), hooks.load_s(bare), hooks.complexity(bare), hooks.resources(bare)) == (
        "cpu", None, {}, {}
    )  # fmt: skip
    assert hooks.device(hooked) == "cuda:0" and hooks.load_s(hooked) == 1.5
    assert hooks.complexity(hooked) == {"kmac_px_enc": 1.0, "kmac_px_dec": 2.0}
    assert hooks.resources(hooked) == {"GPU": 1}


def test_executors_are_chosen_by_name():
    assert isinstance(make_executor(RunRequest(executor="inline")), InlineExecutor)
    assert isinstance(make_executor(RunRequest(executor="local")), LocalExecutor)
    with pytest.raises(ValueError, match="unknown executor 'mpi'; choose from inline, local, dask"):
        make_executor(RunRequest(executor="mpi"))


@pytest.mark.slow
def test_a_run_without_dask_does_not_import_it(photos, tmp_path):
    script = (
        "import sys, bench\n"
        f"bench.run('jpeg', {str(photos)!r}, out={str(tmp_path)!r}, executor='inline', qualities={{'jpeg': [50]}})\n"
        "print(sorted(m for m in ('dask', 'distributed', 'bench.dask_executor') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "[]", done.stderr
