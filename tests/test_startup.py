"""Start-up cost (issue #16): a command imports only what it uses.

Checked on ``sys.modules`` in a fresh interpreter, never on timings: ``import audiodup.cli`` and
``audiodup --version`` must not load the search, statistics and plotting stacks.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

# scipy.stats alone costs ~0.7 CPU-s to import, FAISS ~0.1, librosa and matplotlib more
HEAVY = (
    "scipy.stats",
    "faiss",
    "librosa",
    "matplotlib",
    "numba",
    "scipy.ndimage",
    "scipy.sparse.csgraph",
)

_REPORT = f"import json, sys; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"


def _loaded_after(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_REPORT}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert _loaded_after("import audiodup.cli") == []


def test_version_loads_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from audiodup.cli import main\n"
        "sys.argv = ['audiodup', '--version']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    assert _loaded_after(code) == []


def test_what_screen_imports_before_decoding_loads_no_heavy_module() -> None:
    """``screen`` imports the report writers (and through them rescan) before it decodes."""
    assert _loaded_after("import audiodup.cli, audiodup.report, audiodup.rescan") == []


def test_importing_the_package_and_its_light_modules_loads_no_heavy_module() -> None:
    code = "import audiodup, audiodup.results, audiodup.settings, audiodup.schema, audiodup.catalog"
    assert _loaded_after(code) == []


@pytest.mark.parametrize("z", [-3.0, -0.5, 0.0, 0.3, 1.7, 4.2, 8.0, 12.5, 40.0])
def test_the_chroma_tail_is_scipy_stats_norm_sf(z: float) -> None:
    """verdict takes the normal tail from scipy.special (scipy.stats is slow to import):
    bit for bit what stats.norm.sf gives."""
    from scipy import special, stats

    assert float(special.ndtr(-z)) == float(stats.norm.sf(z))


@pytest.mark.parametrize("mu", [0.5, 1.3, 4.0, 17.25, 80.0])
def test_the_peak_check_tail_is_scipy_stats_poisson_sf(mu: float) -> None:
    """peakcheck takes the Poisson tail from scipy.special: bit for bit stats.poisson.sf for
    the counts it asks about (matched - 1 >= 1)."""
    from scipy import special, stats

    for k in np.arange(0, 200):
        assert float(special.pdtrc(k, mu)) == float(stats.poisson.sf(k, mu))
