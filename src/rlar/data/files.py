"""Files on disk as the data layer meets them: listing an input folder, names that are not UTF-8, write probes.

Why a module of its own: every command lists folders (a dataset's ``images/``, predict's input folders) and
checks output folders, and each did it with ``iterdir()`` + ``is_file()``, under which a dangling symbolic link,
a symbolic-link loop or a named pipe silently vanished from the counts. :func:`list_folder` returns every entry
it could not use with the reason, so a source can count it as skipped; it never opens anything (opening a FIFO
would block until a writer appears).

File names are bytes on POSIX; Python decodes the ones that are not UTF-8 with lone surrogates
(``'caf\\udce9.png'``), which print, CSV and JSON writers refuse with a UnicodeEncodeError after the work is done.
:func:`display_name` gives the same name as plain text (``'caf\\\\xe9.png'``) for ids, messages and reports; the
file itself is still opened by its real path.

:func:`probe_folder` checks an output folder named by a command-line option (ConfigError naming the option);
the write probe itself is :func:`rlar.environment.why_not_writable`, the package's one write check.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from rlar.environment import why_not_writable
from rlar.errors import ConfigError

__all__ = ["FolderListing", "display_name", "is_utf8_name", "list_folder", "probe_folder"]


def display_name(name: str | Path) -> str:
    """``name`` as printable UTF-8 text: bytes of a file name that are not UTF-8 are shown as ``\\xNN``."""
    text = str(name)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8_name(name: str | Path) -> bool:
    """Whether a file name (as the OS layer decoded it) is valid UTF-8, i.e. holds no surrogate escapes."""
    try:
        str(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class FolderListing:
    """What :func:`list_folder` found.

    files: regular files (symbolic links to regular files included), sorted by path.
    unusable: (path, reason) of entries that are neither a regular file nor a folder, or cannot be examined:
        dangling links, link loops, named pipes, sockets, devices, entries denied to this user.
    folders: sub-folders met (listed only, or descended into when recursive).
    hidden: entries whose name starts with a dot (not data: .DS_Store, editors' files), not examined.
    """

    files: list[Path] = field(default_factory=list)
    unusable: list[tuple[Path, str]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    hidden: int = 0


def _entry_problem(path: Path) -> tuple[str | None, os.stat_result | None]:
    """(reason the entry cannot be used, or None; its stat following links)."""
    try:
        info = os.stat(path)  # follows symbolic links: what a reader of the entry would get
    except FileNotFoundError:
        if path.is_symlink():  # the reason names no target, so that many such links group into one skip
            return "dangling symbolic link (its target does not exist)", None
        return "vanished while the folder was listed", None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link points back at itself through other links)", None
        return f"cannot be examined ({exc.strerror or exc})", None
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return None, info
    kind = ("named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode)
            else "device file" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "special file")
    return f"not a regular file but a {kind}; not read", info


def list_folder(folder: str | Path, recursive: bool = False) -> FolderListing:
    """Every entry of ``folder`` sorted into files, unusable entries (with reasons), folders and hidden entries.

    ``recursive``: descend into sub-folders (hidden ones excepted); a folder reached twice through symbolic
    links (a loop) is listed as unusable the second time rather than walked forever. Nothing is opened.
    A folder that cannot be listed at all raises OSError (the caller names it).
    """
    root = Path(folder)
    listing = FolderListing()
    seen: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        current = pending.pop()
        try:
            info = os.stat(current)
        except OSError as exc:
            if current is root:
                raise
            listing.unusable.append((current, f"cannot be examined ({exc.strerror or exc})"))
            continue
        if (info.st_dev, info.st_ino) in seen:
            listing.unusable.append((current, "folder reached again through a symbolic link (a loop or a second "
                                                "link to it); not walked twice"))
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(current) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            if current is root:
                raise
            listing.unusable.append((current, f"folder cannot be listed ({exc.strerror or exc})"))
            continue
        for name in names:
            path = current / name
            if name.startswith("."):
                listing.hidden += 1
                continue
            problem, entry = _entry_problem(path)
            if problem is not None:
                listing.unusable.append((path, problem))
            elif entry is not None and stat.S_ISDIR(entry.st_mode):
                listing.folders.append(path)
                if recursive:
                    pending.append(path)
            else:
                listing.files.append(path)
    listing.files.sort()
    listing.folders.sort()
    return listing


def probe_folder(folder: str | Path, what: str, target: str | Path | None = None) -> Path:
    """Create ``folder`` if needed and check a file can be written in it; ConfigError naming the path otherwise.

    ``what`` names the option or role in the error (``--out``, ``output folder``); ``target`` is the file the
    caller means to write there, shown instead of the folder.
    """
    folder = Path(folder)
    reason = why_not_writable(folder)
    if reason is not None:
        shown = target if target is not None else folder
        raise ConfigError(what, f"cannot write {shown}: {reason} ({folder})")
    return folder
