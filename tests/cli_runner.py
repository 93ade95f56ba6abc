"""Run the console entry point in-process, as a user's shell would, and capture what it prints."""

from __future__ import annotations

import sys

import pytest

import audiodup.cli


def run_main(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``audiodup ARGV`` through ``audiodup.cli.main``."""
    monkeypatch.setattr(sys, "argv", ["audiodup", *argv])
    with pytest.raises(SystemExit) as info:
        audiodup.cli.main()
    captured = capsys.readouterr()
    return info.value.code or 0, captured.out, captured.err
