"""Soak: `bench run` killed with SIGKILL at 20 random moments (ten per executor: local, dask) on the sample
set, resumed each time; the store ends with exactly the rows of an uninterrupted run, never holds a
duplicate, and no process of a killed run survives it. Seeded (SOAK_SEED) so a failure can be replayed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest
from test_processes import REPO, mark_processes, marked, run_command, stored_keys, survivors

KILLS = 10  # per executor
MAX_DELAY_S = 5.0  # a kill comes at a random moment up to this long after the start: startup included
BUDGET_S = 240.0  # the whole test, on 2 cores
SMALL = ("--codecs", "jpeg", "--qualities", "jpeg=20,50,80", "--metrics", "psnr_rgb", "--jobs", "2")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_runs_killed_at_random_moments_lose_and_duplicate_nothing(tmp_path, monkeypatch):
    started = time.monotonic()
    token = mark_processes(monkeypatch)
    seed = int(os.environ.get("SOAK_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    reference = tmp_path / "reference"
    subprocess.run(run_command(reference, *SMALL, "--executor", "inline"), cwd=REPO, capture_output=True,
                   timeout=300, check=True)  # fmt: skip
    expected = sorted(stored_keys(reference))
    assert len(expected) == 15
    for executor in ("local", "dask"):
        out = tmp_path / executor
        command = run_command(out, *SMALL, "--executor", executor)
        for kill in range(KILLS):
            delay = rng.uniform(0, MAX_DELAY_S)
            run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            run.kill()
            run.wait(timeout=30)
            where = f"seed {seed}, {executor} kill {kill + 1} at {delay:.2f} s"
            assert survivors(token) == [], where
            keys = stored_keys(out)
            assert len(keys) == len(set(keys)) and set(keys) <= set(expected), where
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        assert sorted(stored_keys(out)) == expected, f"seed {seed}, {executor}"
        assert survivors(token) == [] and marked(token) == []
    took = time.monotonic() - started
    assert took < BUDGET_S, f"the soak took {took:.0f} s, over its budget of {BUDGET_S:.0f} s (seed {seed})"
