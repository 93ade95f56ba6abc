"""The C allocator keeps freed arrays' memory for the next ones in every process that screens."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import audiodup.allocator as allocator

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's",
)

# arrays of 0.8-12 MB made and dropped in a mixed order, as a look makes them; prints the minor
# page faults taken and whether the thresholds were raised
CHURN = """
import resource, sys
import numpy as np
from audiodup.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
rng = np.random.default_rng(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    arrays = [np.ones(int(n)) for n in rng.integers(100_000, 1_500_000, 6)]
    del arrays[::2]
    more = [np.ones(int(n)) for n in rng.integers(100_000, 1_500_000, 3)]
    del arrays, more
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, kept)
"""


def _churn(mode: str, **environ: str) -> tuple[int, bool]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env = {k: v for k, v in env.items() if not k.startswith("MALLOC_")} | environ
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), out[1] == "True"


@glibc_only
def test_freed_arrays_are_reused_without_page_faults():
    untouched, kept_untouched = _churn("leave")
    faults, kept = _churn("keep")
    assert kept and not kept_untouched
    # measured: 69,000 faults left alone, 5,500 kept (the arrays are written once each)
    assert faults * 4 < untouched, (faults, untouched)


@glibc_only
@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"},
    ],
)
def test_an_operators_thresholds_stand(environ):
    _, kept = _churn("keep", **environ)
    assert not kept


def test_the_thresholds_are_raised_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_kept", None)
    monkeypatch.setattr(allocator, "_raise_thresholds", lambda: calls.append(1) or True)
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert calls == [1]


def test_the_command_line_and_the_service_raise_them(monkeypatch, pristine_catalog_dir):
    import audiodup.cli
    import audiodup.service.engine as engine_module
    from audiodup.service.config import load_config

    asked = []
    for module in (audiodup.cli, engine_module):
        monkeypatch.setattr(module, "keep_freed_memory", lambda: asked.append(1) or True)
    monkeypatch.setattr(sys, "argv", ["audiodup", "--version"])
    with pytest.raises(SystemExit):
        audiodup.cli.main()
    engine = engine_module.Engine(load_config(None, {"db": pristine_catalog_dir}, environ={}))
    engine.close()
    assert len(asked) == 2
