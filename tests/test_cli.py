"""The command line: version, listing, validation summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


# --------------------------------------------------------------------------- safe --out
CLI = [sys.executable, "-m", "hashpivot.optimizer.cli"]
#: Sizes that would run for minutes: a refusal must come before any of this work.
HUGE = {
    "simulate": ["simulate", "demo", "--paths", "50000000"],
    "optimize": ["optimize", "demo", "--paths", "50000000", "--eval-paths", "50000000"],
    "evaluate": ["evaluate", "demo", "--policy", "stay_mining", "--paths", "50000000"],
}
#: Seconds within which a refused --out exits, imports included, on a loaded 2-core machine
#: (about 1 s on a quiet one); the HUGE sizes would take minutes had any work started.
REFUSAL_S = 15.0


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (hidden ones included) with its bytes or link target."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            else:
                out[rel] = p.read_bytes() if p.is_file() else "dir"
    return out


def user_tree(root: Path) -> None:
    (root / "proj" / "sub").mkdir(parents=True)
    (root / "proj" / "important.txt").write_bytes(b"keep \x00\xff me\n")
    (root / "proj" / "sub" / "x.txt").write_text("x")
    (root / "afile.txt").write_text("a user's file")
    (root / "link").symlink_to(root / "proj")
    (root / "dangling").symlink_to(root / "nowhere")


@pytest.mark.parametrize("command", sorted(HUGE))
@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("proj", "not a hashpivot output"),
        ("proj/sub/..", "not a hashpivot output"),
        ("afile.txt", "not a directory"),
        ("afile.txt/sub", "afile.txt is not a directory"),
        ("link", "symbolic link"),
        ("dangling", "symbolic link"),
        ("/proc/x", "cannot create directories in /proc"),
    ],
)
def test_unsafe_out_refused_before_any_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    out: str,
    why: str,
) -> None:
    if out.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    user_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    for extra in ([], ["--overwrite"]):
        assert main([*HUGE[command], "--backend", "numpy", "--out", out, *extra]) == 2
    assert time.perf_counter() - t0 < 2 * REFUSAL_S  # two runs
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(why in line and out in line for line in err), err
    assert snapshot(tmp_path) == before


def test_unwritable_out_one_line_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("f")
    for out in ("/proc/x", "/sys/x", str(tmp_path / "f.txt" / "sub")):
        if not Path(out).parent.exists() and out.startswith("/"):
            continue
        t0 = time.perf_counter()
        proc = subprocess.run(
            CLI + [*HUGE["simulate"], "--backend", "numpy", "--out", out],
            capture_output=True,
            text=True,
            timeout=120,
        )
        seconds = time.perf_counter() - t0
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"output directory {out}: ")
        assert seconds < REFUSAL_S
    assert (tmp_path / "f.txt").read_text() == "f"


def test_overwrite_replaces_only_previous_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "demo", "--paths", "200", "--backend", "numpy", "--quiet"]
    args += ["--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / ".hashpivot-manifest.json").read_text())
    assert manifest["command"] == "simulate demo" and "simulation.json" in manifest["files"]
    first = snapshot(out)
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == first
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "simulation.json").is_file()
    (out / "notes.txt").unlink()
    assert main([*args, "--overwrite", "--seed", "9"]) == 0
    assert set(os.listdir(out)) == set(first)
    assert (out / "simulation.json").read_bytes() != first["simulation.json"]
    assert sorted(os.listdir(tmp_path)) == ["sim"]


@pytest.mark.parametrize("name", ["..", "../victim", "/tmp/x", ".hidden"])
def test_default_output_never_leaves_hashpivot_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    text = (Path(__file__).parents[1] / "scenarios" / "shipped" / "demo.yaml").read_text()
    assert "\nname: demo\n" in text
    proj = tmp_path / "proj"
    proj.mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "v.txt").write_text("v")
    sc = proj / "sc.yaml"
    sc.write_text(text.replace("\nname: demo\n", f"\nname: {json.dumps(name)}\n"))
    (proj / "important.txt").write_text("keep")
    before = snapshot(tmp_path)
    monkeypatch.chdir(proj)
    code = main(["simulate", str(sc), "--paths", "200", "--backend", "numpy", "--quiet"])
    assert code in (0, 2)  # refused by validate, or written under hashpivot-out/
    after = snapshot(tmp_path)
    new = {k for k in after if k not in before}
    assert all(k.startswith("proj/hashpivot-out") for k in new), new
    assert {k: after[k] for k in before} == before
    if code == 0:
        (made,) = os.listdir(proj / "hashpivot-out")
        assert made.endswith("-simulate") and not made.startswith(".")


def test_sigkill_while_computing_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        CLI
        + ["optimize", "demo", "--paths", "2000", "--scenarios", "4", "--eval-paths", "200"]
        + ["--time-limit", "20", "--backend", "numpy", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3.0)
    assert proc.poll() is None, "finished before the kill: the test proves nothing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert list(tmp_path.iterdir()) == []  # no hashpivot-out/, no output, no temporary dir
