"""`bench rescore RUN`: recompute the distortion columns from the kept bitstreams, without re-encoding.

Needs a run made with --keep-bitstreams. Each row without an error is decoded again from its kept
bitstream (whose length must still be the row's bytes) with the run's own catalog entry, and its
metrics are recomputed against the original image (whose pixel hash must still match); rates and
times stay as measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench import metrics
from bench.catalog import CatalogEntry
from bench.codec import Codec, codec_for
from bench.errors import UserError
from bench.images import load_image, pixel_sha256
from bench.runner import BITSTREAMS, bitstream_path, run_dir_lock
from bench.store import Store, row_key


@dataclass
class Rescored:
    rows: int = 0
    problems: list[str] = field(default_factory=list)


def rescore(run_dir: Path) -> Rescored:
    """Recompute the distortion columns of every successful row of ``run_dir`` from its bitstream."""
    folder = run_dir / BITSTREAMS
    if not folder.is_dir():
        raise UserError(f"{run_dir} has no kept bitstreams: run it with --keep-bitstreams to rescore it")
    try:
        config = json.loads((run_dir / "run.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{run_dir}: no readable run.json ({exc})") from None
    entries = {c["config_hash"]: CatalogEntry.from_dict(c["entry"]) for c in config["codecs"]}
    root = Path(config["dataset"]["root"])
    names = {image["sha256"]: image["name"] for image in config["dataset"]["images"]}
    done = Rescored()
    codecs: dict[str, Codec] = {}
    with run_dir_lock(run_dir), Store(run_dir / "results.sqlite") as store:
        frame = store.frame()
        for row in frame[frame["error"].isna()].to_dict("records"):
            key = row_key(row)
            where = f"{row['codec']} {row['image']} q{row['quality']:g}"
            path = bitstream_path(folder, key)
            if not path.is_file():
                done.problems.append(f"{where}: no kept bitstream")
                continue
            data = path.read_bytes()
            if len(data) != row["bytes"]:
                done.problems.append(
                    f"{where}: the kept bitstream has {len(data)} bytes, the row {row['bytes']}"
                )
                continue
            image = load_image(root / names[row["image_sha256"]]).rgb
            if pixel_sha256(image) != row["image_sha256"]:
                done.problems.append(f"{where}: the image's pixels changed since the run")
                continue
            if row["config_hash"] not in codecs:
                codecs[row["config_hash"]] = codec_for(entries[row["config_hash"]])
            decoded = codecs[row["config_hash"]].decode(data, (int(row["height"]), int(row["width"])))
            store.update(key, metrics.distortion(image, decoded))
            done.rows += 1
        store.frame().to_csv(run_dir / "results.csv", index=False)
    return done
