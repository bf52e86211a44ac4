"""Safe output directories: manifest, pre-flight refusals, replacement, leftovers, interrupts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import snapshot

from hashpivot.optimizer.outputs import (
    MANIFEST_NAME,
    TMP_MARKER,
    OutputError,
    atomic_output_dir,
    clean_stale,
    default_output_dir,
    foreign_entries,
    prepare_output,
    read_manifest,
)

#: sha256 of b"bee" (``printf bee | sha256sum``).
SHA256_BEE = "62cb81b5904a262ffaeed02abef36bfc540b09f964b8b0b636662f77ffce6714"


def write_output(target: Path, files: dict[str, str], **kw) -> None:
    with atomic_output_dir(target, **kw) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- writing
def test_output_has_manifest_listing_every_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output(target, {"a.json": "{}", "sub/b.txt": "bee"}, command="simulate demo")
    assert sorted(os.listdir(target)) == sorted([MANIFEST_NAME, "a.json", "sub"])
    data = json.loads((target / MANIFEST_NAME).read_text())
    assert data["command"] == "simulate demo" and data["format"] == "hashpivot-output/1"
    assert data["files"]["sub/b.txt"] == {"bytes": 3, "sha256": SHA256_BEE}
    assert set(data["files"]) == {"a.json", "sub/b.txt"}
    m = read_manifest(target)
    assert m is not None and foreign_entries(target, m) == []
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary sibling left


def test_directories_follow_umask(tmp_path: Path, umask_027: None) -> None:
    target = tmp_path / "new" / "deep" / "out"
    write_output(target, {"x.txt": "x"})
    for d in (tmp_path / "new", tmp_path / "new" / "deep", target):
        assert d.stat().st_mode & 0o777 == 0o750, d
    assert (target / "x.txt").stat().st_mode & 0o777 == 0o640


def test_empty_existing_directory_is_fine(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert prepare_output(target, overwrite=False) == target
    write_output(target, {"x.txt": "x"})
    assert (target / "x.txt").read_text() == "x"


# --------------------------------------------------------------------------- refusals
def test_foreign_directory_refused_untouched(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    (target / "sub").mkdir(parents=True)
    (target / "important.txt").write_bytes(b"\x00precious\n")
    (target / "sub" / "x.txt").write_text("x")
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="not a hashpivot output"):
            prepare_output(target, overwrite=overwrite)
        with pytest.raises(OutputError, match="not a hashpivot output"):
            write_output(target, {"plan.json": "{}"}, overwrite=overwrite)
    assert snapshot(tmp_path) == before


def test_file_refused_untouched(tmp_path: Path) -> None:
    f = tmp_path / "afile.txt"
    f.write_text("mine")
    with pytest.raises(OutputError, match="not a directory"):
        prepare_output(f, overwrite=True)
    with pytest.raises(OutputError, match="not a directory"):
        write_output(f, {"plan.json": "{}"}, overwrite=True)
    assert f.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["afile.txt"]


@pytest.mark.parametrize("sub", ["afile.txt/sub", "afile.txt/a/b"])
def test_path_under_a_file_refused(tmp_path: Path, sub: str) -> None:
    (tmp_path / "afile.txt").write_text("mine")
    with pytest.raises(OutputError, match="afile.txt is not a directory"):
        prepare_output(tmp_path / sub, overwrite=False)
    assert (tmp_path / "afile.txt").read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("where", ["/proc/x", "/proc/hashpivot/deeper"])
def test_unwritable_parent_refused(where: str) -> None:
    with pytest.raises(OutputError, match="cannot create directories in /proc"):
        prepare_output(where, overwrite=False)


def test_symlinks_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    before = snapshot(tmp_path)
    for name in ("link", "link/", "dangling"):
        with pytest.raises(OutputError, match="symbolic link"):
            prepare_output(str(tmp_path / name), overwrite=True)
    with pytest.raises(OutputError, match="symbolic link"):
        write_output(tmp_path / "dangling", {"x": "x"}, overwrite=True)
    assert snapshot(tmp_path) == before and not (tmp_path / "nowhere").exists()


def test_symlink_in_parent_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert prepare_output(tmp_path / "link" / "out", overwrite=False) == real / "out"
    write_output(tmp_path / "link" / "out", {"x.txt": "x"})
    assert (real / "out" / "x.txt").read_text() == "x"


def test_dot_resolves_to_the_directory_itself(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "important.txt").write_text("keep")
    with pytest.raises(OutputError, match="not a hashpivot output"):
        prepare_output(proj / "sub" / "..", overwrite=True)
    with pytest.raises(OutputError, match="not a hashpivot output"):
        prepare_output(f"{proj}/.", overwrite=True)
    with pytest.raises(OutputError, match="root"):
        prepare_output("/", overwrite=True)
    assert (proj / "important.txt").read_text() == "keep"


# --------------------------------------------------------------------------- replacement
def test_previous_output_needs_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output(target, {"old.txt": "old", "keep/a.txt": "a"})
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="--overwrite"):
        prepare_output(target, overwrite=False)
    with pytest.raises(OutputError, match="--overwrite"):
        write_output(target, {"new.txt": "new"})
    assert snapshot(tmp_path) == before
    assert prepare_output(target, overwrite=True) == target
    write_output(target, {"new.txt": "new"}, overwrite=True)
    assert sorted(os.listdir(target)) == [MANIFEST_NAME, "new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_overwrite_keeps_unlisted_and_changed_files(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output(target, {"plan.json": "{}", "report.html": "<p>"})
    (target / "notes.txt").write_text("user notes")
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match=r"did not write \(notes.txt\)"):
        prepare_output(target, overwrite=True)
    with pytest.raises(OutputError, match="notes.txt"):
        write_output(target, {"plan.json": "[]"}, overwrite=True)
    assert snapshot(tmp_path) == before
    (target / "notes.txt").unlink()
    (target / "plan.json").write_text('{"edited": true}')  # a user edited a listed file
    with pytest.raises(OutputError, match=r"plan.json \(changed\)"):
        write_output(target, {"plan.json": "[]"}, overwrite=True)
    assert (target / "plan.json").read_text() == '{"edited": true}'


def test_foreign_directory_appearing_during_the_write_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "out"
    prepare_output(target, overwrite=True)
    with pytest.raises(OutputError, match="not a hashpivot output"):  # noqa: SIM117
        with atomic_output_dir(target, overwrite=True) as tmp:
            (tmp / "plan.json").write_text("{}")
            target.mkdir()
            (target / "user.txt").write_text("user")
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(target)) == ["user.txt"]


def _run_a_while_b_finishes(target: Path, overwrite: bool) -> None:
    with atomic_output_dir(target, overwrite=overwrite) as tmp_a:
        (tmp_a / "a.txt").write_text("from A")
        write_output(target, {"b.txt": "from B"})  # B finishes while A is still writing
        assert sorted(os.listdir(target)) == [MANIFEST_NAME, "b.txt"]


def test_concurrent_runs_never_mix(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(OutputError, match="--overwrite"):
        _run_a_while_b_finishes(target, overwrite=False)
    assert sorted(os.listdir(target)) == [MANIFEST_NAME, "b.txt"]  # B whole, nothing of A
    assert sorted(os.listdir(tmp_path)) == ["out"]
    _run_a_while_b_finishes(tmp_path / "out2", overwrite=True)
    assert sorted(os.listdir(tmp_path / "out2")) == [MANIFEST_NAME, "a.txt"]  # A replaced B whole
    assert sorted(os.listdir(tmp_path)) == ["out", "out2"]


# --------------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_exception_inside_leaves_nothing(tmp_path: Path, exc: type[BaseException]) -> None:
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(exc), atomic_output_dir(target) as tmp:
        (tmp / "plan.json").write_text("{}")
        raise exc()
    assert os.listdir(tmp_path) == []


def test_sigterm_inside_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out"
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info, atomic_output_dir(target) as tmp:
        (tmp / "partial.json").write_text("{")
        os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.code == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == previous


# --------------------------------------------------------------------------- leftovers
def test_stale_temporary_directories_are_cleaned(tmp_path: Path) -> None:
    pid = dead_pid()
    host = socket.gethostname()

    def leftover(name: str, owner: int | None, files: dict[str, str]) -> Path:
        d = tmp_path / name
        d.mkdir()
        if owner is not None:
            (d / TMP_MARKER).write_text(json.dumps({"pid": owner, "host": host}))
        for rel, text in files.items():
            (d / rel).write_text(text)
        return d

    dead = leftover(f".out.hashpivot-tmp-{pid}-ab12", pid, {"plan.json": "{"})
    probe = leftover(f".out.hashpivot-tmp-{pid}-cd34", None, {})
    alive = leftover(f".out.hashpivot-tmp-{os.getpid()}-ef56", os.getpid(), {"p.json": "{"})
    unmarked = leftover(f".out.hashpivot-tmp-{pid}-gh78", None, {"user.txt": "u"})
    other_pid = leftover(f".out.hashpivot-tmp-{pid}-ij90", pid + 1, {"user.txt": "u"})
    lookalike = leftover(f".out.tmp-{pid}-kl12", pid, {"user.txt": "u"})
    empty_old = leftover(f".out.hashpivot-old-{pid}-mn34", None, {})
    prepare_output(tmp_path / "out", overwrite=False)
    assert not dead.exists() and not probe.exists() and not empty_old.exists()
    for kept in (alive, unmarked, other_pid, lookalike):
        assert kept.is_dir() and os.listdir(kept), kept


def test_stale_replaced_output_deleted_by_manifest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_output(src, {"plan.json": "{}", "r.html": "<p>"})
    old = tmp_path / f".out.hashpivot-old-{dead_pid()}-xy"
    src.rename(old)
    (old / "user.txt").write_text("u")
    assert clean_stale(tmp_path) == []
    assert sorted(os.listdir(old)) == ["user.txt"]  # listed files gone, the user's kept
    whole = tmp_path / f".out.hashpivot-old-{dead_pid()}-zw"
    write_output(tmp_path / "src", {"plan.json": "{}", "sub/r.html": "<p>"})
    (tmp_path / "src").rename(whole)
    assert clean_stale(tmp_path) == [whole] and not whole.exists()


def test_killed_run_leftover_cleaned_by_next_run(tmp_path: Path) -> None:
    """A process killed inside ``atomic_output_dir`` leaves a temp dir the next run removes."""
    code = (
        "import os, sys\n"
        "from hashpivot.optimizer.outputs import atomic_output_dir\n"
        f"with atomic_output_dir({str(tmp_path / 'out')!r}) as tmp:\n"
        "    (tmp / 'plan.json').write_text('{')\n"
        "    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    (left,) = os.listdir(tmp_path)
    assert left.startswith(".out.hashpivot-tmp-")
    write_output(tmp_path / "out", {"x.txt": "x"})
    assert sorted(os.listdir(tmp_path)) == ["out"]


# --------------------------------------------------------------------------- default path
@pytest.mark.parametrize(
    "name",
    [
        "demo",
        "..",
        "../x",
        "../../victim",
        "/etc",
        ".hidden",
        "a/b",
        "",
        ".",
        "a\\..\\b",
        "x" * 300,
    ],
)
@pytest.mark.parametrize("suffix", ["", "simulate", "evaluate"])
def test_default_output_dir_stays_inside(name: str, suffix: str) -> None:
    out = default_output_dir(name, suffix)
    root = Path("hashpivot-out").resolve()
    assert out.parent == Path("hashpivot-out")
    assert out.resolve().parent == root
    assert not out.name.startswith((".", "-")) and "/" not in out.name and ".." not in out.name
    if name == "demo":
        assert out == Path("hashpivot-out") / ("demo" + (f"-{suffix}" if suffix else ""))


def test_manifest_with_escaping_paths_is_invalid(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write_output(target, {"x.txt": "x"})
    data = json.loads((target / MANIFEST_NAME).read_text())
    data["files"]["../victim.txt"] = data["files"]["x.txt"]
    (target / MANIFEST_NAME).write_text(json.dumps(data))
    assert read_manifest(target) is None
    with pytest.raises(OutputError, match="not a hashpivot output"):
        prepare_output(target, overwrite=True)


def test_messages_are_one_line(tmp_path: Path) -> None:
    odd = tmp_path / "a\nb"
    odd.write_text("mine")
    with pytest.raises(OutputError) as info:
        prepare_output(odd, overwrite=False)
    assert "\n" not in str(info.value) and "a\\nb" in str(info.value)
    target = tmp_path / "out"
    write_output(target, {"x.txt": "x"})
    data = json.loads((target / MANIFEST_NAME).read_text())
    data["command"] = "optimize\nTraceback (most recent call last):"
    (target / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(OutputError, match="--overwrite") as info:
        prepare_output(target, overwrite=False)
    assert "\n" not in str(info.value)
