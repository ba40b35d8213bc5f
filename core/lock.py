"""One writer per run directory: the advisory lock ``<run>/.lock`` that ``run_pipeline`` holds for a whole run.

**Local run directories** (``file://`` and plain paths, NFS included): ``fcntl.flock`` on ``<run>/.lock``, taken
without waiting. The file holds the holder's host, pid and start time, so a second run fails at once naming them.
The kernel drops the lock when the holder's process ends, however it ends (a SIGKILL leaves the file behind, but
not the lock: the next run takes it over). On release the file is removed; a taker checks, after locking, that the
file it locked is still the one at the path (otherwise it retries), so removing it is safe.

**Other filesystems** (``s3://``, ``gs://``, ...) have no advisory locks: the lock is a best-effort lock *file*.
A run reads ``.lock`` if there is one and refuses to start unless it was left by a process of this host that no
longer runs; then it writes its own and removes it at the end. Two runs started within the same second can both
pass the check (object stores have no atomic create here), and a run killed with SIGKILL leaves the file, which the
message then says to remove. A warning says so on every run.

Worker processes never take the lock: only the process that calls ``run_pipeline`` does (the file descriptor is
not inherited by exec'd processes; forked workers share the holder's lock, which ends with the last of them).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from winnow.core.errors import ConfigError, RunDirLocked

if TYPE_CHECKING:
    from winnow.core.rundir import RunDir

__all__ = ["LOCK", "RunLock"]

#: the lock file's name in the run directory
LOCK = ".lock"


def _holder_info() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another winnow run (it is just starting)"
    return f"another winnow run: host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}"


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        holder = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError):
        return True  # not a pid: assume the holder lives
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def _is_local(run: RunDir) -> bool:
    protocol = run.fs.protocol if isinstance(run.fs.protocol, str) else run.fs.protocol[0]
    return protocol in ("file", "local")


class RunLock:
    """The lock of one run directory; a context manager (``with run.lock(): ...``).

    Raises:
        RunDirLocked: on ``acquire``, when another run holds it (the message names host, pid and since when).
    """

    def __init__(self, run: RunDir):
        self.run = run
        self._fd: int | None = None
        self._remote_info: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._remote_info is not None

    def acquire(self) -> RunLock:
        if self.held:
            return self
        if _is_local(self.run):
            self._acquire_local()
        else:
            self._acquire_remote()
        return self

    def release(self) -> None:
        if self._fd is not None:
            self._release_local()
        elif self._remote_info is not None:
            self._release_remote()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- local: flock -----------------------------------------------------------------------------------------

    def _path(self) -> str:
        return os.path.join(self.run.path, LOCK)

    def _acquire_local(self) -> None:
        import fcntl

        path = self._path()
        while True:
            fd = self._open_lock_file(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse(os.pread(fd, 4096, 0))
                os.close(fd)
                raise RunDirLocked(
                    f"{self.run.url} is in use by {_describe(holder)} (lock {path}); one run per run directory: "
                    "wait for it to finish, or stop it, then rerun"
                ) from None
            if self._is_current(fd, path):
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_info()).encode(), 0)
        self._fd = fd

    def _open_lock_file(self, path: str) -> int:
        """Create the run directory and open its lock file; a folder winnow cannot write is a config error."""
        try:
            os.makedirs(self.run.path, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # read-only folder or file system, a file in the way, ...
            where = e.filename or self.run.path
            raise ConfigError(
                f"cannot write the run directory {self.run.url}: {e.strerror or e} ({where}); choose an output "
                "folder winnow can write to"
            ) from None

    @staticmethod
    def _is_current(fd: int, path: str) -> bool:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _release_local(self) -> None:
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            if self._is_current(fd, self._path()):
                os.unlink(self._path())  # still locked: nobody can take it between unlink and close
        finally:
            os.close(fd)  # releases the flock

    # -- remote: a best-effort lock file ------------------------------------------------------------------------

    def _acquire_remote(self) -> None:
        run = self.run
        if run.exists(LOCK):
            holder = _parse(run.read_bytes(LOCK))
            stale = bool(holder) and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid"))
            if not stale:
                raise RunDirLocked(
                    f"{run.url} is in use by {_describe(holder)} (lock file {run.url_of(LOCK)}); one run per run "
                    "directory: wait for it to finish, or, if that run is no longer running, remove the lock file"
                )
            pid = holder.get("pid") if holder else None
            logger.warning(f"{run.url_of(LOCK)}: left by pid {pid} of this host, which has ended: taken over")
        logger.warning(
            f"{run.url}: not a local directory, so its lock is a best-effort lock file ({LOCK}), not an atomic lock: "
            "do not start two runs on it at once"
        )
        self._remote_info = _holder_info()
        run.write_text(LOCK, json.dumps(self._remote_info))

    def _release_remote(self) -> None:
        info, self._remote_info = self._remote_info, None
        run = self.run
        try:
            if run.exists(LOCK) and _parse(run.read_bytes(LOCK)) == info:
                run.remove(LOCK)
        except OSError as e:  # best effort, like the lock itself
            logger.warning(f"{run.url_of(LOCK)}: could not be removed ({e}); remove it before the next run")
