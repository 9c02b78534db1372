"""The storage port: where the log and the archive keep their objects.

Two backends implement :class:`ObjectStore`: a local folder (:mod:`.local`) and
any S3-compatible service (:mod:`.s3`). :func:`open_store` picks one from a
location string.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from pipelines.errors import InputError, UnusableObject

if TYPE_CHECKING:
    from pipelines.storage.s3 import S3Options

#: The most any one read takes from a store unless its caller knows a smaller bound from the format (a
#: tile, a checkpoint, a bundle): an archive may be hostile, and a read must not exhaust memory.
MAX_OBJECT_BYTES = 256 << 20

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    """Keys are ``/``-separated segments of ``A-Z a-z 0-9 . _ -``, none of them ``.`` or ``..``."""
    if not _KEY.match(key) or any(seg in (".", "..") for seg in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


class ObjectStore(Protocol):
    """A key → bytes store. Contract for every backend:

    - When a put returns, the object is durable: it survives a crash of this
      process and of the machine, and every later read sees it.
    - ``put_immutable`` creates an object once. Putting identical bytes again
      succeeds (so a retried step is harmless); different bytes raise
      :class:`ConflictError` and change nothing.
    - ``put_if_version`` is a compare-and-swap: it writes only if the object's
      current version is ``version`` (``None``: only if it does not exist), and
      raises :class:`ConflictError` otherwise. Exactly one of two racing
      writers with the same expected version wins.
    - Failures raise :class:`StorageError`, with ``transient`` set when a retry
      may succeed. A failed put may or may not have persisted: callers order
      their writes so that either outcome is safe.
    - Reads treat the store as hostile: an object over ``limit`` bytes raises
      :class:`UnusableObject` before more than ``limit + 1`` bytes are held, and
      a folder store reads only regular files inside its folder (never through
      a symbolic link), raising :class:`UnusableObject` for anything else.
    """

    def describe(self) -> str:
        """Where the store is, for messages (never with credentials)."""
        ...

    def get(self, key: str, limit: int = MAX_OBJECT_BYTES) -> bytes | None:
        """The object's bytes (at most ``limit``), or None if it does not exist."""
        ...

    def get_versioned(self, key: str, limit: int = MAX_OBJECT_BYTES) -> tuple[bytes, str] | None:
        """The object's bytes (at most ``limit``) and an opaque version for :meth:`put_if_version`, or None."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted (for export and audits, not for hot paths); a folder
        store lists links and other non-regular files too (reading them fails) but never descends a link."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        """``length`` bytes of the object from byte ``start`` (one ranged GET), or None if absent."""
        ...

    def put_immutable(self, key: str, data: bytes) -> None:
        """Create ``key`` with ``data`` unless it already holds exactly ``data``."""
        ...

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        """Replace ``key`` if its version is ``version`` (None: create); return the new version."""
        ...


def too_large(key: str, where: str, size: int, limit: int) -> UnusableObject:
    """The error for ``key`` in ``where`` holding ``size`` bytes (or more) where ``limit`` is the most allowed."""
    return UnusableObject(f"{key} in {where} is {size:,} bytes or more, over the {limit:,} bytes such an object "
                          f"may hold: not read")


def get_all(store: ObjectStore, keys: list[str], workers: int = 16,
            limit: int = MAX_OBJECT_BYTES) -> list[bytes | None]:
    """``get`` every key (each at most ``limit`` bytes), concurrently; results in the order of ``keys``."""
    if len(keys) <= 1 or workers <= 1:
        return [store.get(k, limit) for k in keys]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(keys))) as pool:
        return list(pool.map(lambda k: store.get(k, limit), keys))


def put_all(store: ObjectStore, objects: dict[str, bytes], workers: int = 16) -> None:
    """``put_immutable`` every object, concurrently (S3 latency dominates); re-raise the first failure.

    Returns only when every put has finished, so a caller's next step (a commit
    point) never overtakes a write still in flight.
    """
    if len(objects) <= 1 or workers <= 1:
        for key, data in objects.items():
            store.put_immutable(key, data)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(objects))) as pool:
        futures = [pool.submit(store.put_immutable, key, data) for key, data in objects.items()]
    for future in futures:
        future.result()


def open_store(location: str, *, s3_endpoint: str | None = None, options: S3Options | None = None) -> ObjectStore:
    """A store for ``location``: ``s3://bucket[/prefix]`` (with ``options``) or a local folder path."""
    if location.startswith("s3://"):
        from pipelines.storage.s3 import S3Store

        bucket, _, prefix = location[5:].partition("/")
        if not bucket:
            raise InputError(f"location {location!r} names no bucket")
        return S3Store.connect(bucket, prefix.strip("/"), endpoint_url=s3_endpoint, options=options)
    if "://" in location:
        raise InputError(f"location {location!r}: want a folder or s3://bucket/prefix")
    from pipelines.storage.local import LocalStore

    return LocalStore(location)
