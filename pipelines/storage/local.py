"""A folder as an :class:`ObjectStore`, for single-machine use and the embedded default.

Objects are files; writes go to a temporary file that is fsynced, then linked
(create-once) or renamed (compare-and-swap) into place, and the folder is fsynced.
The compare-and-swap holds an exclusive ``flock`` so that processes sharing the
folder on one machine serialise; the version is the SHA-256 of the content.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from pipelines.errors import ConflictError, StorageError
from pipelines.storage import check_key


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc

    def list_keys(self, prefix: str) -> list[str]:
        if not self.root.exists():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not k.split("/")[-1].startswith("."))

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        try:
            with self._path(key).open("rb") as fh:
                fh.seek(start)
                return fh.read(length)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        data = self.get(key)
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
