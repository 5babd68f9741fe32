"""The output folder of a run: checked first, locked, and listed in ``run_manifest.json``.

Every command that writes an ``--out`` folder goes through :func:`check_output_dir` (before
anything is computed: a file, a read-only or missing location is one clear error) and
:class:`RunFolder` (while it writes):

* **Lock**: ``.tio2fiji.lock`` is held (``flock``) for the whole run, so a second run into the same
  folder is refused at once; the operating system releases it when a run dies.
* **Manifest**: ``run_manifest.json`` has one entry per command (``analyze``, ``segment``, ...):
  the files its latest run wrote (size, SHA-256), the files it planned to write, its status.
* **One consistent set**: a rerun of a command first removes the files its earlier run wrote, so a
  failed rerun cannot leave old tables beside a new report. A file is only ever removed when a
  manifest lists it; a file the run would overwrite that no manifest entry of the same command
  lists (a user's own, another command's, or an older tio2fiji's) makes the run refuse, naming it.
  A file that changed since tio2fiji wrote it is not removed either: the run refuses.
* **Resume**: a command may keep some of its earlier run's files (``keep``: ``analyze`` keeps the
  per-image parts made from the same image bytes, model and options, and their images' files, and
  the parts and files of images that are not in the new run); the rest of the earlier set is
  removed as above. The kept files belong to the new run: its manifest entry lists them.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import socket
import tempfile
from pathlib import Path

from ..errors import OutputError
from ._files import file_sha256, write_json

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

__all__ = ["MANIFEST", "LOCK", "check_output_dir", "RunFolder", "read_manifest"]

log = logging.getLogger(__name__)

MANIFEST = "run_manifest.json"
LOCK = ".tio2fiji.lock"
_FORMAT = 1


def check_output_dir(path, option="--out", keep=True) -> Path:
    """Create the output folder and prove that a file can be written there.

    Parameters
    ----------
    path : path
    option : str
        How the user gave it, for the message.
    keep : bool
        False removes again the folders this check created (a check before a run that may still
        fail on its options or model, and that creates the folder itself).

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        ``path`` is a file, lies under a file, cannot be created or is not writable (read-only,
        permissions, ``/proc``, disk full); the message names the folder and the cause.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{option} {path}: is a file, not a folder; give a folder (it is "
                              f"created when missing).")
        above = path
        while not above.exists() and above != above.parent:
            above = above.parent
        if above.exists() and not above.is_dir():
            raise OutputError(f"{option} {path}: cannot create the folder, {above} is a file; "
                              f"choose another --out.")
        created = [path, *path.parents[:len(path.parents) - len(above.parents) - 1]] \
            if above != path else []
        path.mkdir(parents=True, exist_ok=True)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot create the folder ({exc.strerror or exc}"
                          f"{_virtual(exc, above)}); choose a folder you can write to.") from exc
    try:
        _probe(path, option)
    finally:
        for folder in created if not keep else ():  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
    return path


def _probe(path: Path, option: str) -> None:
    """Write, flush and delete a small file in ``path``."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tio2fiji-probe-", dir=path)
        try:
            os.write(fd, b"tio2fiji probe\n" * 256)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write into the folder ({exc.strerror or exc}"
                          f"{_virtual(exc, path)}); {_hint(exc)}.") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _virtual(exc: OSError, folder: Path) -> str:
    """Why an existing folder says 'no such file': it is not on a disk (``/proc``, ``/sys``)."""
    if exc.errno == errno.ENOENT and folder.is_dir():
        return f": {folder} is on a virtual file system, not a disk"
    return ""


def _hint(exc: OSError) -> str:
    return str(OutputError.from_os_error("", exc)).split("; ", 1)[-1].rstrip(".")


def read_manifest(path) -> dict:
    """The manifest of folder ``path`` (``{"format": 1, "runs": {}}`` when there is none).

    Raises
    ------
    OutputError
        The manifest is not one tio2fiji wrote (not JSON, wrong structure).
    """
    file = Path(path) / MANIFEST
    if not file.is_file():
        return {"format": _FORMAT, "runs": {}}
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        ok = isinstance(doc, dict) and isinstance(doc.get("runs"), dict)
    except (OSError, ValueError) as exc:
        raise OutputError(f"{file}: unreadable ({exc}); delete it, and the outputs it listed, or "
                          f"choose another --out.") from exc
    if not ok:
        raise OutputError(f"{file}: not a tio2fiji run manifest; delete it or choose another --out.")
    return doc


def _inside(folder: Path, rel) -> str | None:
    """``rel`` as a clean relative path inside ``folder``, or None (absolute, ``..``, not a str)."""
    if not isinstance(rel, str) or not rel:
        return None
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        return None
    return p.as_posix()


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _snapshot(folder: Path) -> dict:
    """``{relative path: (inode, size, mtime_ns)}`` of the files under ``folder``."""
    out = {}
    for p in folder.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                out[p.relative_to(folder).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            continue
    return out


class RunFolder:
    """The output folder of one run of ``command``: locked, cleaned of its stale files, listed.

    Use as a context manager around everything the run writes::

        with RunFolder(out, "measure", planned=["particles.csv", "particles.json"]):
            ...

    A run that is killed inside it stays ``"running"`` in the manifest; its planned files count as
    its own, so the next run of the command removes them.

    Parameters
    ----------
    path : path
        The folder (created; see :func:`check_output_dir`).
    command : str
        The manifest entry (``"analyze"``, ``"segment"``, ...); a rerun replaces its files.
    planned : iterable of str
        Relative paths this run may write. One that exists and is not listed by this command's
        earlier run makes the run refuse before anything is removed or written.
    inputs : iterable of path
        The run's input files: never removed, even when an earlier run wrote them.
    scan : bool
        Also list every file under ``path`` that the run created or changed (for commands whose
        outputs are not all known in advance); otherwise only the planned files are listed.
    option : str
        How the user gave ``path``, for messages.
    keep : callable, optional
        ``keep(stale) -> set of str``: called once the folder is locked with the earlier run's
        files that still exist (relative paths); the ones it returns stay (resume).

    Attributes
    ----------
    removed : list of str
        The earlier run's files removed on entry.
    kept : list of str
        The earlier run's files kept on entry (``keep``).
    """

    def __init__(self, path, command, planned=(), inputs=(), scan=False, option="--out", keep=None):
        self.path = Path(path)
        self.command = str(command)
        self.planned = sorted({r for r in (_inside(self.path, p) for p in planned) if r})
        self.inputs = {Path(p).resolve() for p in inputs}
        self.option = option
        self.scan = bool(scan)
        self.removed: list = []
        self.kept: list = []
        self._keep = keep
        self._fd = None
        self._before: dict = {}
        self._started = None

    # -- the lock ---------------------------------------------------------------------------
    def _lock(self):
        lock = self.path / LOCK
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError.from_os_error(lock, exc) from exc
            if not _try_lock(fd):
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputError(
                    f"{self.option} {self.path}: another tio2fiji run ({holder}) is writing this "
                    f"folder (lock {lock}); wait for it to finish or choose another --out.")
            try:  # the file may have been removed by the run that held it just before
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"command": self.command, "pid": os.getpid(),
                                 "host": socket.gethostname(), "since": _now()}).encode())
        self._fd = fd

    def _unlock(self):
        if self._fd is None:
            return
        if fcntl is not None:  # Windows cannot remove an open file; the lock file stays there
            (self.path / LOCK).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    # -- the manifest -----------------------------------------------------------------------
    def _owners(self, runs) -> dict:
        """Relative path -> the commands whose manifest entries list it (written or planned)."""
        owners: dict = {}
        for cmd, entry in runs.items():
            if not isinstance(entry, dict):
                continue
            for rel in list(entry.get("files") or {}) + list(entry.get("planned") or []):
                rel = _inside(self.path, rel)
                if rel:
                    owners.setdefault(rel, set()).add(cmd)
        return owners

    def _check_conflicts(self, runs):
        owners = self._owners(runs)
        foreign = []
        for rel in self.planned:
            who = owners.get(rel, set())
            if (self.path / rel).exists() and self.command not in who:
                whose = (f"of the earlier {', '.join(sorted(who))} run" if who
                         else "in no run manifest: your own file, or from a tio2fiji without manifests")
                foreign.append(f"{rel} ({whose})")
        if foreign:
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise OutputError(
                f"{self.option} {self.path}: this {self.command} run would overwrite "
                f"{', '.join(foreign[:5])}{more}; move them away or choose another --out.")

    def _stale(self, entry) -> list:
        """The earlier run's files that still exist; refuses when one of them was changed."""
        files = entry.get("files") or {}
        rels = set(files) | set(entry.get("planned") or [])
        stale, changed = [], []
        for rel in sorted(r for r in (_inside(self.path, r) for r in rels) if r):
            p = self.path / rel
            if not p.is_file() or p.resolve() in self.inputs:
                continue
            want = (files.get(rel) or {}).get("sha256") if isinstance(files.get(rel), dict) else None
            if want is not None and file_sha256(p) != want:
                changed.append(rel)
            else:
                stale.append(rel)
        if changed:
            raise OutputError(
                f"{self.option} {self.path}: {', '.join(changed[:5])} changed since the earlier "
                f"{self.command} run wrote it; move it away or choose another --out.")
        return stale

    def _write_manifest(self, runs, entry):
        doc = {"format": _FORMAT, "runs": {**runs, self.command: entry}}
        write_json(self.path / MANIFEST, doc)

    def __del__(self):  # the lock of a RunFolder dropped without __exit__: let others in
        try:
            self._unlock()
        except Exception:  # noqa: BLE001 - nothing to report to at interpreter shutdown
            pass

    def __enter__(self):
        check_output_dir(self.path, self.option)
        self._lock()
        try:
            runs = read_manifest(self.path)["runs"]
            self._check_conflicts(runs)
            earlier = runs.get(self.command)
            stale = self._stale(earlier) if isinstance(earlier, dict) else []
            kept = set(self._keep(list(stale))) if self._keep is not None and stale else set()
            self.kept = [rel for rel in stale if rel in kept]
            stale = [rel for rel in stale if rel not in kept]
            for rel in stale:  # the earlier set goes before this run writes its own
                (self.path / rel).unlink(missing_ok=True)
            self.removed = stale
            self._started = _now()
            self._write_manifest(runs, self._entry("running", {}))
            self._before = _snapshot(self.path) if self.scan else {}
        except BaseException:
            self._unlock()
            raise
        if stale:
            log.info("%s: removed %d file(s) of the earlier %s run", self.path, len(stale), self.command)
        return self

    def _entry(self, status, files) -> dict:
        return {"status": status, "started": self._started,
                "finished": None if status == "running" else _now(), "pid": os.getpid(),
                "planned": self.planned, "removed_from_earlier_run": self.removed,
                "kept_from_earlier_run": len(self.kept), "files": files}

    def written(self) -> list:
        """The files this run owns so far: planned ones that exist, the earlier run's files it kept
        (``keep``: they stay listed, so a later run may keep or replace them), and any new or
        changed file."""
        skip = {MANIFEST, LOCK}
        new = {rel for rel in [*self.planned, *self.kept] if (self.path / rel).is_file()}
        if self.scan:
            new |= {rel for rel, sig in _snapshot(self.path).items() if self._before.get(rel) != sig}
        return sorted(r for r in new if r not in skip and not Path(r).name.endswith(".tmp"))

    def __exit__(self, exc_type, exc, tb):
        status = "complete" if exc is None else f"failed: {type(exc).__name__}: {exc}"
        try:
            files = {}
            for rel in self.written():
                p = self.path / rel
                files[rel] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
            runs = read_manifest(self.path)["runs"]
            self._write_manifest(runs, self._entry(status, files))
        except (OSError, ValueError) as err:  # e.g. the disk is full: the run's own error matters
            if exc is None:
                raise
            log.warning("%s: could not update %s: %s", self.path, MANIFEST, err)
        finally:
            self._unlock()
        return False


def _try_lock(fd) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _read_holder(fd) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"{info.get('command', '?')}, pid {info.get('pid', '?')} on {info.get('host', '?')}, " \
               f"since {info.get('since', '?')}"
    except (OSError, ValueError):
        return "unknown"
