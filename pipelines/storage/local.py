"""A folder as an :class:`ObjectStore`, for single-machine use and the embedded default.

Objects are files; writes go to a temporary file that is fsynced, then linked
(create-once) or renamed (compare-and-swap) into place, and the folder is fsynced.
The compare-and-swap holds an exclusive ``flock`` so that processes sharing the
folder on one machine serialise; the version is the SHA-256 of the content.

Reads open each path component below the folder with ``O_NOFOLLOW`` (relative
to the one before, so nothing is swapped in between) and take only regular files,
sized by ``fstat`` before reading: a folder handed to an auditor may be hostile,
with links out of it, devices, or files larger than their format allows.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from pipelines.errors import ConflictError, StorageError, UnusableObject
from pipelines.storage import MAX_OBJECT_BYTES, check_key, too_large

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # (a FIFO must not block the open)


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _open(self, key: str) -> int | None:
        """A descriptor of ``key``'s regular file, reached without following any link below the folder;
        None if it does not exist. UnusableObject for a link or anything but a regular file."""
        parts = check_key(key).split("/")
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:  # not a folder, or not ours to read
            raise StorageError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc
        try:
            for part in parts[:-1]:
                inner = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = inner
            found = os.open(parts[-1], _FILE, dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnusableObject(f"{key} in {self.root} goes through a symbolic link or a non-folder: "
                                     f"not read (only regular files inside the folder are)") from exc
            raise StorageError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(found).st_mode):
            os.close(found)
            raise UnusableObject(f"{key} in {self.root} is not a regular file (a device, a pipe or a folder): "
                                 f"not read")
        return found

    def _read(self, key: str, limit: int, start: int = 0, whole: bool = True) -> bytes | None:
        """The file's bytes from ``start``: all of them, at most ``limit`` (``whole``), or its first ``limit``."""
        fd = self._open(key)
        if fd is None:
            return None
        try:
            size = os.fstat(fd).st_size - start
            if size > limit and whole:
                raise too_large(key, str(self.root), size, limit)
            chunks, held = [], 0
            while held <= limit:  # the file may grow while it is read: never hold more than limit + 1
                chunk = os.pread(fd, min(1 << 20, limit + 1 - held), start + held)
                if not chunk:
                    break
                chunks.append(chunk)
                held += len(chunk)
        except OSError as exc:
            raise StorageError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        if held > limit and whole:
            raise too_large(key, str(self.root), held, limit)
        return b"".join(chunks)[:limit]

    def get(self, key: str, limit: int = MAX_OBJECT_BYTES) -> bytes | None:
        return self._read(key, limit)

    def list_keys(self, prefix: str) -> list[str]:
        keys = []
        for folder, dirs, files in os.walk(self.root):  # (os.walk never descends a link to a folder)
            rel = Path(folder).relative_to(self.root)
            keys += [(rel / name).as_posix() for name in files if not name.startswith(".")]
            keys += [(rel / name).as_posix() for name in dirs if os.path.islink(os.path.join(folder, name))]
        return sorted(k for k in keys if k.startswith(prefix))

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        return self._read(key, length, start, whole=False)

    def get_versioned(self, key: str, limit: int = MAX_OBJECT_BYTES) -> tuple[bytes, str] | None:
        data = self.get(key, limit)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def _stage(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    @staticmethod
    def _sync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put_immutable(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            tmp = self._stage(path, data)
            try:
                os.link(tmp, path)  # atomic create-if-absent
            except FileExistsError:
                if path.read_bytes() != data:
                    raise ConflictError(f"{key} already exists in {self.root} with different content") from None
            finally:
                os.unlink(tmp)
            self._sync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {key} in {self.root}: {exc.strerror}") from exc

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        path = self._path(key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".cas.lock", "a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                current = self.get_versioned(key)
                if (current[1] if current else None) != version:
                    raise ConflictError(f"{key} in {self.root} changed (compare-and-swap lost)")
                tmp = self._stage(path, data)
                os.replace(tmp, path)
                self._sync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {key} in {self.root}: {exc.strerror}") from exc
        return hashlib.sha256(data).hexdigest()
