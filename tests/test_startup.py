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


def test_a_plain_screen_command_line_is_not_parsed_by_typer(tmp_path) -> None:
    """typer converts every parameter through pydantic (~0.11 CPU-s): a plain ``audiodup
    screen FILE`` is parsed by the CLI itself and never loads it."""
    code = (
        "import sys\n"
        "from audiodup.cli import main\n"
        f"sys.argv = ['audiodup', 'screen', '--db', {str(tmp_path / 'none')!r}, 'x.mp3']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in ('pydantic', 'rich.progress') if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "error:" in result.stderr  # the catalog does not exist: one line, no traceback
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_a_screen_opens_its_catalog_and_reaches_decoding_without_the_writer_lock(
    catalog_copy,
) -> None:
    """Screening never writes: up to its first decode ``audiodup screen`` opens the catalog
    without importing the writer lock's library (filelock, ~0.015 CPU-s)."""
    code = (
        "import json, sys\n"
        "import audiodup.catalog as catalog\n"
        "def stop(*args, **kwargs):\n"
        "    print(json.dumps(['filelock' in sys.modules, 'audiodup.store' in sys.modules]))\n"
        "    raise SystemExit(0)\n"
        "catalog.load_audio = stop\n"
        "from audiodup.cli import main\n"
        f"sys.argv = ['audiodup', 'screen', '--db', {str(catalog_copy)!r}, 'x.mp3']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [False, True]


def _typer_screen_params(argv: list[str]) -> dict | None:
    """What typer passes to ``screen`` for ``audiodup screen ARGV``; None when it refuses."""
    import typer
    import typer.main

    from audiodup.cli import app

    group = typer.main.get_command(app)
    command = group.get_command(typer.Context(group), "screen")
    try:
        params = dict(command.make_context("screen", list(argv)).params)
    except (typer.TyperException, typer.Exit):  # typer's usage errors and --help
        return None
    return {**params, "paths": list(params["paths"])}


PLAIN_SCREENS = [
    ["screen", "a.mp3"],
    ["screen", "a.mp3", "b dir/c.flac", "--json"],
    ["screen", "--db", "cat", "--top", "3", "--workers", "2", "--timeout", "2.5", "a.mp3"],
    ["screen", "--db=cat", "--top=12", "--out", "r.html", "a.mp3"],
    ["screen", "--json", "--", "--top", "-x.mp3"],
    ["screen", "a.mp3", "--out=report.csv", "--timeout", "0.1"],
    ["screen", "--quick", "--json", "a.mp3"],
]
UNUSUAL_SCREENS = [
    ["screen"],
    ["screen", "--help"],
    ["screen", "--top", "0", "a.mp3"],
    ["screen", "--top", "x", "a.mp3"],
    ["screen", "--top", "007", "a.mp3"],
    ["screen", "--timeout", "0.05", "a.mp3"],
    ["screen", "--timeout", "1e3", "a.mp3"],
    ["screen", "--json", "--json", "a.mp3"],
    ["screen", "--db", "a", "--db", "b", "a.mp3"],
    ["screen", "--db"],
    ["screen", "--db=", "a.mp3", "b.mp3"],
    ["screen", "--json=1", "a.mp3"],
    ["screen", "--db", "--json", "a.mp3"],
    ["screen", "-", "a.mp3"],
    ["screen", "--jsn", "a.mp3"],
    ["screen", "", "a.mp3"],
    ["--version", "screen", "a.mp3"],
    ["index", "add", "a.mp3"],
]


@pytest.mark.parametrize("argv", PLAIN_SCREENS)
def test_the_plain_screen_parser_gives_what_typer_gives(argv: list[str]) -> None:
    import inspect

    from audiodup.cli import parse_plain_screen, screen

    parsed = parse_plain_screen(argv)
    assert parsed is not None
    defaults = {
        name: p.default
        for name, p in inspect.signature(screen).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert {**defaults, **parsed} == _typer_screen_params(argv[1:])


@pytest.mark.parametrize("argv", UNUSUAL_SCREENS)
def test_unusual_command_lines_go_to_typer(argv: list[str]) -> None:
    """Help, errors and values typer might read its own way are left to typer."""
    from audiodup.cli import parse_plain_screen

    assert parse_plain_screen(argv) is None


def _exit_code_on_a_closed_pipe(argv: list[str]) -> int:
    """``audiodup ARGV`` whose standard output's reader has gone away before it writes."""
    process = subprocess.Popen(
        [sys.executable, "-m", "audiodup", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    process.stdout.close()
    return process.wait(timeout=300)


def test_a_plain_screen_on_a_closed_pipe_ends_as_typer_ends_it(pristine_catalog_dir) -> None:
    """``audiodup screen ... | head -0``: exit 2 in silence (output that cannot be written, not
    a verdict's flag: typer alone would say 1, a duplicate), on the fast path and through typer
    alike (``--top 005`` is left to typer: the same value, read by typer); not an internal
    error."""
    from conftest import UPLOADS_DIR

    upload = str(UPLOADS_DIR / "excerpt_15s_work_00.ogg")
    common = ["screen", "--json", "--db", str(pristine_catalog_dir), upload]
    assert _exit_code_on_a_closed_pipe(common) == 2
    assert _exit_code_on_a_closed_pipe([*common, "--top", "005"]) == 2


def test_ctrl_c_while_the_command_loads_is_one_line_and_exit_130(monkeypatch, capsys) -> None:
    """A review found Ctrl-C in a command's first half second (its modules loading) printing
    a traceback and killing the process by the signal."""
    import importlib

    from audiodup import console

    def interrupted(name: str):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted)
    with pytest.raises(SystemExit) as stopped:
        console.main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_the_console_entry_point_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "audiodup", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("audiodup ")
