"""Safe output directories: hashpivot never deletes or replaces a file it did not write.

Every output directory ends with a manifest, :data:`MANIFEST_NAME`, written last: the files of
the run with their sizes and SHA-256, the command, the version and the time. A directory is a
*previous hashpivot output* only if its manifest is valid and it holds nothing but the files the
manifest lists, unchanged.

* :func:`prepare_output` is the pre-flight check, run before any work: it refuses (with an
  :class:`OutputError`, one line, exit status 2 in the CLI) a path that is a file or a symlink,
  a non-empty directory that is not a previous hashpivot output, a previous output without
  ``overwrite``, and a place where no directory can be created (checked by creating and removing
  a probe directory). It writes nothing that stays.
* :func:`atomic_output_dir` yields a fresh temporary sibling of the target, created only at
  write time (a run killed while computing leaves nothing on disk), and on success renames it
  into place with ``os.rename``: onto a target that does not exist (or is empty), or, with
  ``overwrite``, after the previous hashpivot output has been renamed away to a hidden sibling
  that is then emptied file by file from its manifest. Two runs with the same target never mix:
  the second rename fails and the second run refuses (or replaces the first output whole).
* Temporary directories are named ``.NAME.hashpivot-tmp-PID-RANDOM`` and hold a marker file
  written first; the next run on the same parent removes those whose process is gone
  (:func:`clean_stale`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: File that marks a directory as hashpivot's output; written last.
MANIFEST_NAME = ".hashpivot-manifest.json"
#: Format tag inside the manifest.
MANIFEST_FORMAT = "hashpivot-output/1"
#: Largest manifest read [bytes]; anything bigger is not ours.
MANIFEST_MAX_BYTES = 4 * 1024 * 1024
#: Marker written first into a temporary directory: who owns it.
TMP_MARKER = ".hashpivot-tmp-owner"
#: Tag in the names of temporary and replaced-output directories.
TMP_TAG = "hashpivot-tmp"
OLD_TAG = "hashpivot-old"
#: Root of the default output paths, relative to the working directory.
DEFAULT_ROOT = Path("hashpivot-out")
#: Longest scenario-derived directory name [characters].
MAX_NAME_CHARS = 100
#: Attempts at the final rename when another run keeps taking the target.
SWAP_ATTEMPTS = 3

_HIDDEN_RE = re.compile(rf"^\.(?P<name>.+)\.(?P<tag>{TMP_TAG}|{OLD_TAG})-(?P<pid>\d+)-[^/]+$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_-]+")
_CHUNK_BYTES = 1 << 20


class OutputError(Exception):
    """An output directory that cannot be written safely; the message is one line."""


@dataclass(frozen=True)
class Manifest:
    """What a previous hashpivot run wrote into a directory.

    Attributes
    ----------
    files : relative POSIX path -> (size [bytes], SHA-256 hex digest).
    command, version, created : the run that wrote it (``created`` in ISO 8601, UTC).
    """

    files: dict[str, tuple[int, str]]
    command: str
    version: str
    created: str


# --------------------------------------------------------------------------- helpers
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _dir_mode() -> int:
    """Mode of a new directory under the user's umask."""
    return 0o777 & ~_umask()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("hashpivot")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe_relpath(rel: Any) -> bool:
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        return False
    parts = rel.split("/")
    return not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _is_empty(directory: Path) -> bool:
    with os.scandir(directory) as it:
        return next(it, None) is None


def _walk(directory: Path) -> tuple[set[str], set[str], list[str]]:
    """Files, directories and other entries (symlinks, devices) under ``directory``, relative."""
    files: set[str] = set()
    dirs: set[str] = set()
    other: list[str] = []
    stack = [(directory, "")]
    while stack:
        here, prefix = stack.pop()
        with os.scandir(here) as it:
            for entry in it:
                rel = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    other.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    dirs.add(rel)
                    stack.append((Path(entry.path), rel + "/"))
                elif entry.is_file(follow_symlinks=False):
                    files.add(rel)
                else:
                    other.append(rel)
    return files, dirs, other


def read_manifest(directory: str | Path) -> Manifest | None:
    """The manifest of ``directory``, or None where there is none or it is not valid."""
    path = Path(directory) / MANIFEST_NAME
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MANIFEST_MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return None
    files = data.get("files")
    if not isinstance(files, dict):
        return None
    out: dict[str, tuple[int, str]] = {}
    for rel, meta in files.items():
        if not _safe_relpath(rel) or rel in (MANIFEST_NAME, TMP_MARKER):
            return None
        if not isinstance(meta, dict):
            return None
        size, digest = meta.get("bytes"), meta.get("sha256")
        if type(size) is not int or size < 0 or not isinstance(digest, str):
            return None
        out[rel] = (size, digest)
    return Manifest(
        files=out,
        command=str(data.get("command", "")),
        version=str(data.get("version", "")),
        created=str(data.get("created", "")),
    )


def write_manifest(directory: Path, command: str = "") -> Manifest:
    """List every file under ``directory`` in its manifest (written last, after all files)."""
    files, _, other = _walk(directory)
    if other:
        raise OutputError(f"output {directory}: unexpected entry {other[0]!r} in the new output")
    listed = {}
    for rel in sorted(files - {MANIFEST_NAME, TMP_MARKER}):
        p = directory / rel
        listed[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = {
        "format": MANIFEST_FORMAT,
        "command": command,
        "version": _version(),
        "created": created,
        "files": listed,
    }
    with open(directory / MANIFEST_NAME, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return Manifest(
        files={k: (v["bytes"], v["sha256"]) for k, v in listed.items()},
        command=command,
        version=data["version"],
        created=created,
    )


def foreign_entries(directory: str | Path, manifest: Manifest) -> list[str]:
    """Entries of ``directory`` hashpivot did not write: unlisted, or listed but changed."""
    directory = Path(directory)
    files, dirs, other = _walk(directory)
    implied = {
        "/".join(rel.split("/")[:i]) for rel in manifest.files for i in range(1, rel.count("/") + 1)
    }
    foreign = sorted(other)
    foreign += sorted(d for d in dirs if d not in implied)
    for rel in sorted(files):
        if rel in (MANIFEST_NAME, TMP_MARKER):
            continue
        meta = manifest.files.get(rel)
        if meta is None:
            foreign.append(rel)
            continue
        p = directory / rel
        if p.stat().st_size != meta[0] or _sha256(p) != meta[1]:
            foreign.append(f"{rel} (changed)")
    return foreign


def _show(path: Path | str) -> str:
    return repr(str(path))[1:-1]


def _describe_foreign(shown: str, foreign: list[str]) -> str:
    first = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return (
        f"output directory {shown}: holds {len(foreign)} file(s) hashpivot did not "
        f"write ({_show(first)}); nothing was changed — choose another --out"
    )


def _check_existing(target: Path, *, overwrite: bool, shown: str) -> Manifest | None:
    """Checks on an existing target; returns its manifest where it is a previous output."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"output directory {shown}: cannot be read ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(
            f"output directory {shown}: is a symbolic link; give the real directory instead"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"output directory {shown}: exists and is not a directory")
    try:
        empty = _is_empty(target)
    except OSError as exc:
        raise OutputError(f"output directory {shown}: cannot be read ({exc.strerror})") from None
    if empty:
        return None
    manifest = read_manifest(target)
    if manifest is None:
        raise OutputError(
            f"output directory {shown}: exists, is not empty and is not a hashpivot output; "
            "nothing was changed — choose another --out or an empty directory"
        )
    try:
        foreign = foreign_entries(target, manifest)
    except OSError as exc:
        raise OutputError(f"output directory {shown}: cannot be read ({exc.strerror})") from None
    if foreign:
        raise OutputError(_describe_foreign(shown, foreign))
    if not overwrite:
        raise OutputError(
            f"output directory {shown}: holds a previous hashpivot output "
            f"({_show(manifest.command[:80]) or 'unknown command'}, {_show(manifest.created[:40])}); "
            "pass --overwrite to replace it"
        )
    return manifest


def _resolve(path: str | Path) -> tuple[Path, str]:
    """Absolute target with its parent resolved, and the path as the user gave it."""
    shown = _show(path)
    raw = Path(path).absolute()  # no lexical '..' folding: 'link/..' is resolved below
    if os.path.islink(os.fspath(path)) or os.path.islink(raw):
        raise OutputError(
            f"output directory {shown}: is a symbolic link; give the real directory instead"
        )
    target = raw.parent.resolve() / raw.name if raw.name else raw
    if target.name in ("", ".", ".."):
        target = target.resolve()
    if target.parent == target or not target.name:
        raise OutputError(f"output directory {shown}: cannot be a filesystem root")
    return target, shown


def _nearest_existing(path: Path) -> Path:
    here = path
    while not os.path.lexists(here):
        here = here.parent
    return here


def prepare_output(path: str | Path, *, overwrite: bool = False) -> Path:
    """Pre-flight check of an output directory, before any work; returns its absolute path.

    Refuses, with an :class:`OutputError` of one line, a ``path`` that

    * exists and is not a directory (a file, a device, …);
    * is a symbolic link (dangling or not): symlinks in the *final* component are refused, not
      followed; symlinks in its parent directories are resolved as usual and the resolved
      target is then checked like any other;
    * is a non-empty directory without a valid hashpivot manifest, or one holding files the
      manifest does not list or listed files that were changed;
    * is a previous hashpivot output and ``overwrite`` is false;
    * lies where no directory can be created: a parent that is a file (``f.txt/sub``), not
      writable, or a pseudo file system (``/proc/x``, ``/sys/x``) — checked by creating and
      removing a probe directory in the nearest existing ancestor.

    Empty existing directories are accepted. Removes stale temporary directories of killed runs
    next to the target (:func:`clean_stale`); otherwise leaves the disk as it was.
    """
    target, shown = _resolve(path)
    parent = target.parent
    anchor = _nearest_existing(parent)
    if not anchor.is_dir():
        raise OutputError(f"output directory {shown}: {_show(anchor)} is not a directory")
    if anchor == parent:
        clean_stale(parent)
    _check_existing(target, overwrite=overwrite, shown=shown)
    try:
        probe = tempfile.mkdtemp(prefix=f".{target.name}.{TMP_TAG}-{os.getpid()}-", dir=anchor)
        os.rmdir(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise OutputError(
            f"output directory {shown}: cannot create directories in {_show(anchor)} ({why})"
        ) from None
    return target


def default_output_dir(scenario_name: str, suffix: str = "") -> Path:
    """``hashpivot-out/<name>[-<suffix>]``, which can never leave ``hashpivot-out/``.

    Characters other than ASCII letters, digits, ``_`` and ``-`` become ``_``; leading and
    trailing ``_``, ``-`` are dropped (so ``..`` or ``../x`` cannot climb); an empty result
    becomes ``scenario``.
    """
    name = _UNSAFE_RE.sub("_", scenario_name).strip("_-")[:MAX_NAME_CHARS] or "scenario"
    if suffix:
        name = f"{name}-{_UNSAFE_RE.sub('_', suffix)}"
    out = DEFAULT_ROOT / name
    if Path(os.path.abspath(out)).parent != Path(os.path.abspath(DEFAULT_ROOT)):
        raise OutputError(f"scenario name {scenario_name!r}: cannot name an output directory")
    return out


# --------------------------------------------------------------------------- stale leftovers
def _marker_pid(directory: Path) -> int | None:
    try:
        data = json.loads((directory / TMP_MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("host") != socket.gethostname():
        return None
    pid = data.get("pid")
    return pid if type(pid) is int else None


def _remove_listed(directory: Path, manifest: Manifest) -> bool:
    """Delete the listed files, then empty subdirectories and the directory; True if it is gone."""
    for rel, (size, digest) in manifest.files.items():
        p = directory / rel
        with contextlib.suppress(FileNotFoundError):
            if p.is_symlink() or not p.is_file():
                continue
            if p.stat().st_size == size and _sha256(p) == digest:
                p.unlink()
    subdirs = sorted(
        {"/".join(r.split("/")[:i]) for r in manifest.files for i in range(1, r.count("/") + 1)},
        key=lambda d: -d.count("/"),
    )
    for d in subdirs:
        with contextlib.suppress(OSError):
            (directory / d).rmdir()
    for name in (MANIFEST_NAME, TMP_MARKER):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    try:
        directory.rmdir()
    except OSError:
        return False
    return True


def clean_stale(parent: str | Path) -> list[Path]:
    """Remove leftovers of killed hashpivot runs in ``parent``; returns what was removed.

    Only hidden directories named ``.NAME.hashpivot-tmp-PID-…`` or ``.NAME.hashpivot-old-PID-…``
    whose process ``PID`` is gone: a temporary directory is removed whole when its marker names
    that PID on this host (an empty one, a probe, is removed too); a replaced output only file
    by file from its manifest, keeping anything unlisted.
    """
    parent = Path(parent)
    removed: list[Path] = []
    try:
        with os.scandir(parent) as it:
            entries = list(it)
    except OSError:
        return removed
    for entry in entries:
        m = _HIDDEN_RE.match(entry.name)
        if m is None or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(m["pid"])
        if _pid_alive(pid):
            continue
        p = Path(entry.path)
        try:
            if _is_empty(p):  # a probe, or killed before anything was moved in
                p.rmdir()
            elif m["tag"] == TMP_TAG:
                if _marker_pid(p) == pid:
                    shutil.rmtree(p)
                else:
                    continue
            else:
                manifest = read_manifest(p)
                if manifest is None or not _remove_listed(p, manifest):
                    continue
        except OSError:
            continue
        removed.append(p)
    return removed


# --------------------------------------------------------------------------- atomic output
class _Terminated(SystemExit):
    """SIGTERM, raised so that cleanup runs."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """Defer SIGINT and SIGTERM across the few renames of a swap."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _make_parents(parent: Path) -> list[Path]:
    """Create the missing directories up to ``parent``; returns those created, deepest first."""
    missing: list[Path] = []
    here = parent
    while not os.path.lexists(here):
        missing.append(here)
        here = here.parent
    mode = _dir_mode()
    created: list[Path] = []
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            continue
        created.append(d)
    return created[::-1]


def _swap(tmp: Path, target: Path, *, overwrite: bool, shown: str) -> None:
    """Rename ``tmp`` onto ``target``; replace only a previous hashpivot output."""
    for _ in range(SWAP_ATTEMPTS):
        try:
            os.rename(tmp, target)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise OutputError(
                    f"output directory {shown}: cannot be written ({exc.strerror})"
                ) from None
        # The target exists and is not empty (or not a directory): ours to replace?
        manifest = _check_existing(target, overwrite=overwrite, shown=shown)
        if manifest is None:
            continue  # it became empty or vanished meanwhile: try again
        old = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.{OLD_TAG}-{os.getpid()}-", dir=target.parent)
        )
        try:
            os.rename(target, old)  # onto our own empty directory
        except FileNotFoundError:
            old.rmdir()
            continue
        except OSError as exc:
            old.rmdir()
            raise OutputError(
                f"output directory {shown}: cannot be replaced ({exc.strerror})"
            ) from None
        foreign = foreign_entries(old, manifest)
        if foreign:  # a file appeared between the check and the rename: put it all back
            try:
                os.rename(old, target)
            except OSError:
                raise OutputError(
                    _describe_foreign(shown, foreign) + f"; the old output is in {_show(old)}"
                ) from None
            raise OutputError(_describe_foreign(shown, foreign))
        try:
            os.rename(tmp, target)
        except OSError:  # another run took the target meanwhile
            try:
                os.rename(old, target)
            except OSError:
                _remove_listed(old, manifest)  # replaced anyway, by the other run, as asked
            continue
        if not _remove_listed(old, manifest):
            print(
                f"output directory {shown}: kept files that appeared in the old output in "
                f"{_show(old)}",
                file=sys.stderr,
            )
        return
    raise OutputError(
        f"output directory {shown}: another run keeps writing it; nothing of this run was kept"
    )


@contextmanager
def atomic_output_dir(
    target: str | Path, *, overwrite: bool = False, command: str = ""
) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``target`` when the block succeeds.

    The target is checked as in :func:`prepare_output` on entry and again at the swap. The
    temporary sibling ``.NAME.hashpivot-tmp-PID-RANDOM`` is created on entry (mode under the
    user's umask) with a marker naming this process; the caller writes its files, then the
    manifest is written last and the directory is renamed into place. A previous hashpivot
    output is replaced only with ``overwrite``, and only the files its manifest lists (unchanged)
    are deleted; a foreign directory, a file or a symlink is never replaced. On any exception
    (KeyboardInterrupt, SystemExit and SIGTERM, which raises during the block, included) the
    temporary directory and parents created here are removed and nothing else changes.

    Parameters
    ----------
    target : the output directory.
    overwrite : replace a previous hashpivot output.
    command : what wrote it, recorded in the manifest (e.g. ``"optimize demo"``).
    """
    target, shown = _resolve(target)
    created: list[Path] = []
    tmp: Path | None = None
    try:
        with _sigterm_raises():
            _check_existing(target, overwrite=overwrite, shown=shown)
            try:
                created = _make_parents(target.parent)
                clean_stale(target.parent)
                tmp = Path(
                    tempfile.mkdtemp(
                        prefix=f".{target.name}.{TMP_TAG}-{os.getpid()}-", dir=target.parent
                    )
                )
                marker = {"pid": os.getpid(), "host": socket.gethostname(), "target": str(target)}
                (tmp / TMP_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
                os.chmod(tmp, _dir_mode())
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
                raise OutputError(f"output directory {shown}: cannot be created ({why})") from None
            yield tmp
            write_manifest(tmp, command)  # the marker stays until the swap: a kill is cleanable
            with _signals_blocked():
                try:
                    _swap(tmp, target, overwrite=overwrite, shown=shown)
                except OSError as exc:
                    why = exc.strerror or type(exc).__name__
                    raise OutputError(
                        f"output directory {shown}: cannot be written ({why})"
                    ) from None
                tmp = None
                with contextlib.suppress(OSError):
                    (target / TMP_MARKER).unlink()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            for d in created:
                with contextlib.suppress(OSError):
                    d.rmdir()


def replace_file(path: Path, data: bytes) -> None:
    """Write the file ``path`` whole or not at all: a temporary sibling (mode under the user's
    umask) renamed over it. For files inside a directory hashpivot owns (a sweep's table)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TMP_TAG}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON with a trailing newline (floats as Python prints them)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")


__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "OutputError",
    "atomic_output_dir",
    "clean_stale",
    "default_output_dir",
    "foreign_entries",
    "prepare_output",
    "read_manifest",
    "replace_file",
    "write_json",
    "write_manifest",
]
