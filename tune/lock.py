"""One driver per experiment: an exclusive lock on ``<storage>/<name>/.lock``, taken before the
driver reads or writes anything else of the experiment.

The lock is an ``fcntl.flock`` on a file that names its holder (host, pid, start time, command).
The kernel drops a flock when its process dies, however it dies, so a crashed driver never leaves
a lock that a new driver on the same host cannot take: the dead holder's name is still in the
file, and the takeover is logged. The file is never deleted (deleting a locked file lets two
drivers lock two different files), only emptied when its holder ends.

On a shared file system whose locks do not reach other hosts, the holder's name is the lock: a
file naming a live process, or a process on another host (whose liveness cannot be checked from
here), refuses a second driver with one line naming it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from .store import ExperimentError

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_text(holder: dict[str, Any]) -> str:
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"
            + (f", since {holder['started']}" if holder.get("started") else ""))


class ExperimentLock:
    """``with ExperimentLock(folder):`` holds the experiment for this process, or raises
    :class:`ExperimentError` naming the driver that holds it."""

    def __init__(self, folder: Path, command: str = "", log: Callable[[str], None] = print) -> None:
        self.folder, self.command, self.log = Path(folder), command, log
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None
        self.created = False  #: this driver made the folder (it removes it again if nothing else came into it)

    def _read(self, fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 65536)
        try:
            holder = json.loads(raw.decode("utf-8", "replace")) if raw.strip() else {}
        except ValueError:
            holder = {}
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> "ExperimentLock":
        for _ in range(20):  # retried only when the file was replaced between open and flock
            try:
                self.created = self.created or not self.folder.exists()
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ExperimentError(f"{self.path}: cannot open the experiment lock ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = {}
                for _ in range(10):  # the winner writes its name right after it locks
                    holder = self._read(fd)
                    if holder:
                        break
                    time.sleep(0.1)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise ExperimentError(f"{self.path}: cannot lock ({exc.strerror or exc})") from None
                raise ExperimentError(f"{self.folder.name} is being run by another driver "
                                      f"({_holder_text(holder) if holder else 'starting'}); wait for it, "
                                      "or stop it first") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise ExperimentError(f"{self.path}: the lock file keeps changing; is another driver starting?")
        holder = self._read(fd)
        if holder:
            host, pid = holder.get("host"), holder.get("pid")
            if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
                os.close(fd)  # a live holder whose lock did not block us: a file system without flock
                raise ExperimentError(f"{self.folder.name} is being run by another driver ({_holder_text(holder)})")
            if host != socket.gethostname():
                os.close(fd)
                raise ExperimentError(
                    f"{self.folder.name} is held by a driver on another host ({_holder_text(holder)}); if it is no "
                    f"longer running, empty {self.path} and start again")
            self.log(f"taking over the lock of {self.folder.name} from a driver that is gone ({_holder_text(holder)})")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": self.command}
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise ExperimentError(f"{self.path}: cannot write the experiment lock ({exc.strerror or exc})") from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if self.created and [p.name for p in self.folder.iterdir()] == [LOCK_FILE]:
                self.path.unlink()  # a new experiment refused before it began: leave no folder behind
                self.folder.rmdir()
            else:
                os.ftruncate(self.fd, 0)
        except OSError:
            pass  # an unreleased name is taken over as stale: the flock goes with this process anyway
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = None

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
