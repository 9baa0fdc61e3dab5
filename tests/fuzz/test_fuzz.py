"""The fuzz targets in the test suite: the seed corpus (and every crash once found) replayed, and a short atheris run each."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
# Seconds of fuzzing per target in `make test` (`make fuzz FUZZ_SECONDS=600` for a real hunt).
SMOKE_SECONDS = int(os.environ.get("FUZZ_SMOKE_SECONDS", "4"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_corpus_holds(name):
    seeds = sorted((CORPUS / name).iterdir())
    assert seeds
    for seed in seeds:
        TARGETS[name](seed.read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_fuzz_run_finds_nothing(name, tmp_path):
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", name, str(work), str(CORPUS / name),
         f"-max_total_time={SMOKE_SECONDS}", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_SECONDS + 120)
    crashes = [p.name for p in tmp_path.iterdir() if p.name != "corpus"]
    assert proc.returncode == 0 and not crashes, proc.stderr[-4000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr).group(1))
    rate = re.search(r"stat::average_exec_per_sec:\s*(\d+)", proc.stderr).group(1)
    assert runs > 0
    print(f"{name}: {runs} executions, {rate}/s")
