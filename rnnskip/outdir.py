"""Output folders that are replaced as a whole, safely.

Every command writes into a temporary sibling and renames it over its output
folder only when complete. Replacing deletes what was there, so a folder is only
replaced when rnnskip wrote it (it holds that writer's marker file and the list of
what rnnskip wrote, MANIFEST) or it is empty -- never the current folder, one of its
parents, or a folder holding the command's own inputs. Files added later by hand (a
user's main.c in WORK/src) or edited stop the replacement, and so does a missing
MANIFEST (a copy without its dot-files), since nothing then tells the user's files apart.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from .errors import RnnskipError

MANIFEST = ".rnnskip-files"


def _files(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _manifest(folder: Path, hashed: bool) -> str:
    """MANIFEST's text: one file per line, with its sha256 after a tab when ``hashed`` (a folder whose
    files users are told they may edit: an edit then stops the replacement too)."""
    return "".join(f + (f"\t{_digest(folder / f)}" if hashed and (folder / f).is_file() else "") + "\n"
                   for f in sorted(_files(folder)))


def _listed(m: Path) -> dict:
    """MANIFEST's files -> their sha256 ("" when not recorded)."""
    return {name: digest for name, _, digest in (line.partition("\t") for line in m.read_text().splitlines())}


def _listing(out: Path) -> Optional[dict]:
    """What rnnskip wrote in ``out`` (file -> sha256 or ""): its own MANIFEST's list, or, for a subfolder of an
    output folder that a later command replaces on its own (a conversion's WORK/firmware, rebuilt by 'rnnskip
    build'), the parent MANIFEST's entries under it; None when neither lists it."""
    if (out / MANIFEST).is_file():
        return _listed(out / MANIFEST)
    if (out.parent / MANIFEST).is_file():
        prefix = out.name + "/"
        under = {f[len(prefix):]: d for f, d in _listed(out.parent / MANIFEST).items() if f.startswith(prefix)}
        if under:
            return under
    return None


def foreign_files(out: Path, listed: dict, regenerated: Iterable[str] = ()) -> list:
    """Files in ``out`` that its list ``listed`` (:func:`_listing`) does not name, or names with another content
    (sorted; an edited one is shown with " (edited)"). regenerated: folder prefixes ("build/") whose files are
    outputs of the folder's own build, not the user's work."""
    listed = {**listed, MANIFEST: ""}
    extra = [f for f in _files(out) - set(listed) if not any(f.startswith(p) for p in regenerated)]
    edited = [f"{f} (edited)" for f, digest in listed.items()
              if digest and (out / f).is_file() and _digest(out / f) != digest]
    return sorted(extra + edited)


def start_manifest(folder) -> None:
    """Give ``folder`` (which a command just filled, not through :func:`atomic_dir`: 'rnnskip import' starting a
    work folder) its MANIFEST of what is in it, when it has none; later commands add theirs
    (:func:`add_to_manifest`)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        (folder / MANIFEST).write_text(_manifest(folder, hashed=False))


def add_to_manifest(folder, paths: Iterable[Path]) -> None:
    """List ``paths`` (files, or every file under a folder) in ``folder``'s MANIFEST as rnnskip's, when
    it has one: what a later command writes into an output folder (the stage commands continuing a
    conversion's work folder) is then replaced with it, not mistaken for the user's files."""
    folder = Path(folder)
    m = folder / MANIFEST
    if not m.is_file():
        return
    listed = set(_listed(m))
    for p in paths:
        p = Path(p)
        for f in ([q for q in p.rglob("*") if q.is_file()] if p.is_dir() else [p] if p.is_file() else []):
            listed.add(f.relative_to(folder).as_posix())
    m.write_text("".join(f + "\n" for f in sorted(listed)))


def check_writable(path, what: str = "--out") -> None:
    """Raise a one-line RnnskipError unless something can be created at ``path`` (a file or a folder):
    checked before the work, so a read-only location does not cost a whole run. The folders
    leading to it may be missing (the command creates them); the nearest existing one must take a file."""
    shown = str(path)
    d = Path(path).absolute().parent
    while not d.exists() and d != d.parent:
        d = d.parent
    if not d.is_dir():
        raise RnnskipError(f"{what} {shown}: {d} is a file, not a folder; choose another location")
    try:
        fd, probe = tempfile.mkstemp(prefix=".rnnskip-probe-", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RnnskipError(f"{what} {shown} cannot be written ({(e.strerror or str(e)).lower()} in {d}); "
                           f"choose another location") from None


def check_replaceable(out, marker: str, what: str = "--out", inputs: Iterable[Optional[str]] = (),
                      regenerated: Iterable[str] = ()) -> Path:
    """Raise a one-line RnnskipError unless ``out`` may be created or replaced.

    marker: a file name that the writer always puts in its folder (``report.json``,
    ``predictor.json`` ...); an existing non-empty folder without it is not ours.
    inputs: paths the command reads; ``out`` must not contain them. Returns the
    absolute path."""
    shown = str(out)
    if not shown.strip():
        raise RnnskipError(f"{what} is empty: give the folder to write into")
    out = Path(out).absolute()
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise RnnskipError(f"{what} {shown} is the current folder or one of its parents, and the output folder "
                           f"is replaced as a whole; give a new folder name")
    for i in inputs:
        if i and real == Path(i).resolve():
            raise RnnskipError(f"{what} {shown} is also {i}, which this command reads; write the output somewhere else")
        if i and real in Path(i).resolve().parents:
            raise RnnskipError(f"{what} {shown} holds the input {i}, and the output folder is replaced as a whole; "
                               f"write the output somewhere else")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise RnnskipError(f"{what} {shown} is a file; give a folder name")
        if os.path.ismount(out):
            raise RnnskipError(f"{what} {shown} is a mount point, and the output folder is replaced as a whole by "
                               f"renaming; write into a folder inside it (e.g. {Path(shown) / 'out'})")
        if any(out.iterdir()) and not (out / marker).is_file():
            whose = ("holds another rnnskip command's output" if (out / MANIFEST).is_file() or
                     (out / "stages.json").is_file() else "was not written by rnnskip")
            raise RnnskipError(f"{what} {shown} already exists and {whose} (no {marker} in it); it would be replaced "
                               f"as a whole: choose a new folder or empty it yourself")
        listed = _listing(out)
        if any(out.iterdir()) and listed is None:
            # a copy that left the dot-file behind (cp -r out/* dst/), or a folder with only the marker: nothing
            # tells rnnskip's files from the user's, which the replacement would delete
            raise RnnskipError(f"{what} {shown} already exists without {MANIFEST}, the list of the files rnnskip "
                               f"wrote (a copy without its dot-files, written by hand, or by an rnnskip older than "
                               f"the list), so files of yours in it cannot be told apart and would be deleted with "
                               f"it: choose a new folder or empty it yourself")
        extra = foreign_files(out, listed, regenerated) if listed is not None else []
        if extra:
            more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
            if all(f.endswith(" (edited)") for f in extra):
                names = ", ".join(f[:-len(" (edited)")] for f in extra[:3])
                raise RnnskipError(f"{what} {shown} holds files edited since rnnskip wrote them ({names}{more}) "
                                   f"and would be replaced as a whole: keep your edits elsewhere (copy the folder) "
                                   f"or choose a new folder")
            raise RnnskipError(f"{what} {shown} holds files rnnskip did not write ({', '.join(extra[:3])}{more}) "
                               f"and would be replaced as a whole: move them out or choose a new folder")
    check_writable(out, what)
    return out


@contextlib.contextmanager
def atomic_dir(out, marker: str, what: str = "--out", inputs: Iterable[Optional[str]] = (),
               regenerated: Iterable[str] = (), hashed: bool = False):
    """Yield a temporary folder next to ``out``; it replaces ``out`` only on
    success (checked with :func:`check_replaceable` before and after the work), and a
    replacement that fails leaves ``out`` as it was (one-line RnnskipError). ``hashed``: MANIFEST
    records each file's sha256, so a file edited since also stops the next replacement."""
    inputs, regenerated = list(inputs), tuple(regenerated)
    shown = str(out)
    out = check_replaceable(out, marker, what, inputs, regenerated)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.old-*"):   # left by a swap a crash interrupted
        _remove(stale)
    for stale in out.parent.glob(f".{out.name}.partial-*"):   # left by a run that was killed (SIGKILL, power)
        if not _writer_alive(stale.name):
            _remove(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}.{_host()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)   # mkdtemp makes it private; the output is an ordinary folder
    try:
        yield tmp
        (tmp / MANIFEST).write_text(_manifest(tmp, hashed))
        check_replaceable(out, marker, what, inputs, regenerated)   # the folder may have changed meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # The old folder (or symlink) is renamed aside before the new one takes its name and deleted only
    # after: a rename that fails (a mount point, an immutable folder) or a signal between the two
    # renames leaves the old output as it was.
    old = None
    try:
        if os.path.lexists(out):
            old = out.parent / f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
            out.rename(old)
        tmp.rename(out)
    except BaseException as e:
        if old is not None and os.path.lexists(old) and not os.path.lexists(out):
            old.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, OSError):
            raise
        raise RnnskipError(f"{what} {shown} could not be replaced ({(e.strerror or str(e)).lower()}); the previous "
                           f"output is unchanged: choose another folder") from None
    if old is not None:
        _remove(old)


def _host() -> str:
    """This machine's name, letters and digits only (a partial folder's name carries it)."""
    import socket
    return "".join(c for c in socket.gethostname() if c.isalnum()) or "host"


def _writer_alive(name: str) -> bool:
    """Whether the process that made the partial folder ``name`` (``.<out>.partial-<pid>.<host>-<random>``) may
    still run: a process id is only checked on the machine that wrote it (a shared file system, containers on
    one volume: another machine's writer is left alone), and a name without one (an older rnnskip's) too."""
    pid, _, host = name.rsplit(".partial-", 1)[-1].split("-", 1)[0].partition(".")
    if not pid.isdigit() or host != _host():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:   # exists, another user's
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_symlink():
        p.unlink()
    else:
        shutil.rmtree(p, ignore_errors=True)
