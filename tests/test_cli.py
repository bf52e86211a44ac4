"""The command line: version, listing, validation summary."""

from __future__ import annotations

import pytest

from hashpivot.optimizer.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("hashpivot ")


def test_scenarios_lists_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "texas_hybrid", "public_miners_2026"):
        assert name in out


def test_validate_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "demo"]) == 0
    out = capsys.readouterr().out
    assert "rockdale-east" in out and "fluidstack-a" in out and "valid" in out


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
