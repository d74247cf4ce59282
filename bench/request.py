"""What a user asks `bench run` for: a RunRequest, which bench.runner resolves into a RunPlan and the
executors read their settings from."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.catalog import CatalogEntry
from bench.images import DEFAULT_MAX_PIXELS


@dataclass
class RunRequest:
    """What a user asks for; ``resolve`` turns it into a fully specified RunPlan."""

    codecs: str | None = None  # "jpeg,jxl:effort=9"; None = every available in-process codec
    dataset: str = "sample"
    data_dir: str | None = None
    images: int | None = None
    qualities: dict[str, list[float]] = field(default_factory=dict)
    jobs: int | None = None
    threads: int | None = None
    device: str | None = None  # cpu, cuda, auto: for codecs that take a device option (learned codecs)
    executor: str = "local"
    scheduler: str | None = None  # a Dask scheduler's address (executor dask); None: a LocalCluster
    task_timeout: float | None = None  # seconds per task (executor dask)
    ship_images: bool = False  # the client sends the image files to the workers (executor dask)
    cache: str | None = None  # a folder of finished tasks shared by runs (content-addressed by task key)
    keep_bitstreams: bool = False  # keep every encoded bitstream in <run dir>/bitstreams (bench rescore)
    metrics: str | None = None  # --metrics (bench.measures grammar); None: the default group
    out: str | None = None
    skip_unavailable: bool = False
    skip_bad: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS  # the largest image read, in pixels (decoded bitstreams: the same)
    repeat: int | None = None  # timed calls per task, median kept [1; 3 with timing]
    timing: bool = False  # the timing preset: a warm-up per task, repeat >= 3, one job
    time_reference: str | None = None  # codec for relative times [jp2 when in the run]
    entries: list[CatalogEntry] | None = None  # set by --config: the run's own catalog entries
    target_bpp: str | None = None  # --target-bpp 0.25,0.5: search each image's knob for these rates
    target: str | None = None  # --target psnr_y=35: the fewest bytes reaching a metric value
    budget_bpp: str | None = None  # --budget-bpp 0.15: one knob value per codec within the dataset's budget
    rate_tolerance: float = 0.01  # --rate-tolerance: a rate target is met within this relative distance
