"""Any S3-compatible service as an :class:`ObjectStore` (AWS S3, MinIO, Ceph RGW, moto...).

Create-once puts send ``If-None-Match: *``; on 412 the object is read back and
compared, so an identical re-put succeeds. The compare-and-swap sends
``If-Match: <ETag>`` (S3 conditional writes). Every put carries a SHA-256
checksum the server verifies; immutable objects can be put under Object Lock
retention (COMPLIANCE mode) and server-side encryption.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import NoCredentialsError, ParamValidationError, PartialCredentialsError

from pipelines.errors import ConflictError, StorageError
from pipelines.storage import MAX_OBJECT_BYTES, check_key, too_large

_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_PERMANENT = (NoCredentialsError, PartialCredentialsError, ParamValidationError)
_TRANSIENT = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
              "ServiceUnavailable", "503", "500"}


@dataclass(frozen=True)
class S3Options:
    """Per-deployment S3 settings (see pipelines.config)."""

    retention_days: int | None = None  # Object Lock COMPLIANCE retention for immutable objects
    sse: str | None = None  # "AES256" or "aws:kms"
    kms_key_id: str | None = None


def client(endpoint_url: str | None = None, region: str | None = None, **credentials: str) -> Any:
    """A boto3 S3 client with bounded retries and timeouts; credentials from the usual AWS sources
    unless given (``aws_access_key_id``, ``aws_secret_access_key``)."""
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30,
                    max_pool_connections=32)  # above the archive's parallel shard merges
    return boto3.client("s3", endpoint_url=endpoint_url, config=config, region_name=region or "us-east-1",
                        **credentials)


def create_bucket(bucket: str, *, endpoint_url: str | None = None, object_lock: bool = False,
                  **credentials: str) -> None:
    """Create ``bucket`` (with Object Lock enabled if asked), for local stacks and tests."""
    try:
        client(endpoint_url, **credentials).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"cannot create bucket {bucket}: {type(exc).__name__}: {exc}") from exc


def bucket_exists(bucket: str, *, endpoint_url: str | None = None) -> bool:
    """Whether ``bucket`` exists (and these credentials may see it)."""
    try:
        client(endpoint_url).head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            return False
        raise StorageError(f"cannot check bucket {bucket}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"cannot check bucket {bucket}: {type(exc).__name__}: {exc}", transient=True) from exc


class S3Store:
    """An :class:`~pipelines.storage.ObjectStore` under ``s3://bucket/prefix``."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", options: S3Options | None = None) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.options = options or S3Options()

    @classmethod
    def connect(cls, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                options: S3Options | None = None, region: str | None = None) -> S3Store:
        return cls(client(endpoint_url, region), bucket, prefix, options)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, action: str, key: str, exc: Exception) -> StorageError:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _CONFLICT or status in _CONFLICT:
                return ConflictError(f"{action} {key} in {self.describe()}: precondition failed ({code})")
            transient = code in _TRANSIENT or status in _TRANSIENT
            return StorageError(f"{action} {key} in {self.describe()} failed: {code} {status}", transient=transient)
        # Network trouble may pass; missing credentials or a malformed request will not.
        transient = isinstance(exc, BotoCoreError) and not isinstance(exc, _PERMANENT)
        return StorageError(f"{action} {key} in {self.describe()} failed: {type(exc).__name__}", transient=transient)

    def list_keys(self, prefix: str) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix):
                keys += [obj["Key"][len(base):] for obj in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise self._error("listing", prefix, exc) from exc
        return sorted(keys)

    def list_objects(self, prefix: str) -> list[tuple[str, str, int]]:
        """``(key, ETag without quotes, size)`` of every object under ``prefix``, sorted by key.

        Unlike the port's methods, keys are any the bucket holds (agencies name their own objects).
        """
        base = f"{self.prefix}/" if self.prefix else ""
        out = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix):
                out += [(o["Key"][len(base):], o["ETag"].strip('"'), int(o["Size"])) for o in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise self._error("listing", prefix, exc) from exc
        return sorted(out)

    def stream(self, key: str, etag: str, start: int = 0, end: int | None = None,
               chunk: int = 1 << 16) -> Generator[bytes, None, None]:
        """The bytes of ``key`` from ``start`` (to ``end`` inclusive, if given) in chunks, only while its
        ETag is still ``etag`` (a replaced object fails with ConflictError rather than mixing versions)."""
        rng = f"bytes={start}-" if end is None else f"bytes={start}-{end}"
        name = f"{self.prefix}/{key}" if self.prefix else key
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name, Range=rng, IfMatch=etag)["Body"]
            try:
                yield from body.iter_chunks(chunk)
            finally:
                body.close()
        except (ClientError, BotoCoreError) as exc:
            raise self._error("reading", key, exc) from exc

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        found = self._get(key, length, Range=f"bytes={start}-{start + length - 1}")
        return None if found is None else found[0]

    def get_versioned(self, key: str, limit: int = MAX_OBJECT_BYTES) -> tuple[bytes, str] | None:
        return self._get(key, limit)

    def _get(self, key: str, limit: int, **extra: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag; UnusableObject, before reading its body, when it says it holds more
        than ``limit`` bytes, and while reading, when it sends more than it said (never holding more)."""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
            body = resp["Body"]
            try:
                size = int(resp.get("ContentLength") or 0)
                if size > limit:
                    raise too_large(key, self.describe(), size, limit)
                data = body.read(limit + 1)
                if len(data) > limit:
                    raise too_large(key, self.describe(), len(data), limit)
            finally:
                body.close()
            return data, resp["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._error("reading", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("reading", key, exc) from exc

    def get(self, key: str, limit: int = MAX_OBJECT_BYTES) -> bytes | None:
        found = self.get_versioned(key, limit)
        return None if found is None else found[0]

    def _put(self, key: str, data: bytes, *, immutable: bool, **conditions: str) -> str:
        extra: dict[str, Any] = {}
        if self.options.sse:
            extra["ServerSideEncryption"] = self.options.sse
            if self.options.kms_key_id:
                extra["SSEKMSKeyId"] = self.options.kms_key_id
        if immutable and self.options.retention_days:
            extra["ObjectLockMode"] = "COMPLIANCE"
            extra["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.options.retention_days)
        resp = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                      ChecksumAlgorithm="SHA256", **conditions, **extra)
        return str(resp["ETag"])

    def put_immutable(self, key: str, data: bytes) -> None:
        try:
            self._put(key, data, immutable=True, IfNoneMatch="*")
            return
        except (ClientError, BotoCoreError) as exc:
            err = self._error("writing", key, exc)
            if not isinstance(err, ConflictError):
                raise err from exc
        existing = self.get(key)  # 412: someone wrote it first; identical bytes are success
        if existing != data:
            raise ConflictError(f"{key} already exists in {self.describe()} with different content")

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            return self._put(key, data, immutable=False, **condition)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("writing", key, exc) from exc
