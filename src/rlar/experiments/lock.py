"""A lock file per run, so two workers (processes, or machines sharing a folder) never train the same run.

The lock is created with ``O_CREAT | O_EXCL``, which is atomic on local file systems and on NFSv3+; it holds
``host pid start-time``. A lock left by a crashed process is taken over only when its owner is provably dead: same
host and no such pid. A lock from another host is respected until it is removed by hand (``rlar experiment``
prints its path), since a live job on another machine cannot be told apart from a dead one.

A lock whose writer cannot be identified (empty, or not ``host pid ...``) is stale once it is older than
:data:`UNIDENTIFIED_STALE_S`: the owner writes its line right after creating the file, so such a file is only
legitimately seen for microseconds; one that stays is left by a process killed in between (or a full disk), and
would otherwise block its run forever (issue 23).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

LOCK_FILE = ".lock"
#: Age (seconds, from the file's modification time) after which a lock naming no owner is taken over.
UNIDENTIFIED_STALE_S = 60.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; or a pid no process can have
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunLock:
    """``with RunLock(folder) as lock: if lock.acquired: ...``; ``owner`` says who holds it otherwise."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.acquired = False
        self.owner: str | None = None

    def _stale(self) -> bool:
        try:
            text = self.path.read_text(errors="replace")
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return False  # removed or unreadable right now: not provably stale
        fields = text.split()
        if len(fields) < 2 or not fields[1].isdigit():
            # No identifiable writer: being written right now (young), or left by a writer that died (old).
            return age > UNIDENTIFIED_STALE_S
        host, pid = fields[0], int(fields[1])
        return host == socket.gethostname() and not _pid_alive(pid)

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    continue
                try:
                    self.owner = self.path.read_text(errors="replace").strip() or "unknown (empty lock file)"
                except OSError:
                    self.owner = "unknown"
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n")
            self.acquired = True
            return True
        return False

    def release(self) -> None:
        if self.acquired:
            self.path.unlink(missing_ok=True)
            self.acquired = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class LockTimeout(TimeoutError):
    """:func:`held_lock` waited ``timeout_s`` without getting the lock (a TimeoutError raised inside its ``with``
    block is not one of these, so a caller can tell the wait from the work)."""


@contextmanager
def held_lock(folder: Path, timeout_s: float, poll_s: float = 0.2) -> Iterator[RunLock]:
    """Wait until this process holds the lock of ``folder`` and keep it for the ``with`` block: for short work that
    every worker must do in turn (unlike a run, which the others skip). :class:`LockTimeout` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with RunLock(folder) as lock:
            if lock.acquired:
                yield lock
                return
        if time.monotonic() > deadline:
            raise LockTimeout(f"{lock.path} stayed locked for {timeout_s:.0f} s (held by {lock.owner})")
        time.sleep(poll_s)


__all__ = ["LOCK_FILE", "UNIDENTIFIED_STALE_S", "LockTimeout", "RunLock", "held_lock"]
