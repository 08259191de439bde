"""One run per run directory: a lock file that names its holder, and that a killed holder does not leave stale.

Two trainers writing `last.*` and `metrics.jsonl` in the same folder would interleave two runs' files, and a
fresh run starts by deleting what it finds there. So a trainer takes `<run>/run.lock` before it touches the
folder: the file, holding the holder's pid, host, start time and command, is written under a private name and
hard-linked into place, which fails if the lock exists (atomic on local filesystems), so no one ever reads a
half-written lock. A second trainer finds it and refuses, naming the first.

A run killed with SIGKILL cannot remove its lock. The next trainer checks whether the holder still lives: on
the same host a pid that no longer exists, has exited (a zombie), or now belongs to a process started at
another time (the pid was reused) is stale, and the lock is taken over. A lock from another host (a shared
filesystem) cannot be checked, so the message says how to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from miniclip.errors import UserError

LOCK_NAME = "run.lock"


class RunLocked(UserError):
    """Another live run holds the run directory."""


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None where
    there is no /proc or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses
    return fields[19] if fields[0] != "Z" else None  # a zombie has exited


def _alive(holder: dict) -> bool:
    """Whether the process that wrote `holder` is still running (assumed so when that cannot be checked)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if Path("/proc").is_dir():
        started = _process_start(pid)
        return started is not None and started == holder.get("process_start", started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _command() -> str:
    """The command line as the user typed it (`python -m miniclip train …`, not the path of `__main__.py`)."""
    program = "python -m miniclip" if sys.argv[0].endswith(os.path.join("miniclip", "__main__.py")) else sys.argv[0]
    return " ".join([program, *sys.argv[1:]])


class RunLock:
    """`RunLock(directory).acquire()` … `.release()`; releasing a lock this object does not hold does nothing."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_NAME
        self.held = False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": _command()}
        mine = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}")
        mine.write_text(json.dumps(me))
        try:
            for _ in range(2):  # the second try follows the removal of a stale lock
                try:
                    os.link(mine, self.path)
                except FileExistsError:
                    holder = self._holder()
                    if holder is not None and _alive(holder):
                        raise RunLocked(self._refusal(holder)) from None
                    self.path.unlink(missing_ok=True)  # stale: its run was killed
                    continue
                self.held = True
                return self
        finally:
            mine.unlink(missing_ok=True)
        raise RunLocked(f"{self.path.parent} was locked by another run at the same moment (try again)")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):  # gone, or not a lock we wrote: nothing holds it
            return None
        return holder if isinstance(holder, dict) else None

    def _refusal(self, holder: dict) -> str:
        where = f"pid {holder.get('pid')} on {holder.get('host')}"
        if holder.get("host") != socket.gethostname():
            fix = f"if that run is over, delete {self.path}"
        else:
            fix = "wait for it to finish or stop it, or give this run another --out"
        return (f"{self.path.parent} is in use by another run ({where}, since {holder.get('started')}: "
                f"{holder.get('command') or '?'}) ({fix})")
