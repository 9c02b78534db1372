"""The ObjectStore contract, for the local folder and for S3 over HTTP (moto's server)."""

from __future__ import annotations

import threading

import boto3
import pytest

from pipelines.core.merkle import leaf_hash
from pipelines.core.note import Signer
from pipelines.errors import ConflictError, StorageError
from pipelines.storage import open_store
from pipelines.storage.local import LocalStore
from pipelines.storage.s3 import S3Options, S3Store
from pipelines.ledger.tlog import TransparencyLog
from tests.unit.ledger.test_tlog import SIGNER, audit, items


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.system)])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return S3Store.connect(bucket, "logs/one", endpoint_url=endpoint)


def test_immutable_put_accepts_identical_bytes_and_refuses_others(store):
    store.put_immutable("tile/0/000.p/1", b"a" * 32)
    store.put_immutable("tile/0/000.p/1", b"a" * 32)
    with pytest.raises(ConflictError):
        store.put_immutable("tile/0/000.p/1", b"b" * 32)
    assert store.get("tile/0/000.p/1") == b"a" * 32
    assert store.get("tile/0/001") is None


def test_compare_and_swap(store):
    v1 = store.put_if_version("checkpoint", b"one", None)
    with pytest.raises(ConflictError):
        store.put_if_version("checkpoint", b"again", None)
    v2 = store.put_if_version("checkpoint", b"two", v1)
    with pytest.raises(ConflictError):
        store.put_if_version("checkpoint", b"stale", v1)
    assert store.get_versioned("checkpoint") == (b"two", v2)


def test_exactly_one_of_racing_swaps_wins(store):
    v = store.put_if_version("checkpoint", b"start", None)
    wins, losses = [], []
    barrier = threading.Barrier(4)

    def racer(n: int) -> None:
        barrier.wait()
        try:
            store.put_if_version("checkpoint", b"racer %d" % n, v)
            wins.append(n)
        except ConflictError:
            losses.append(n)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 3
    assert store.get("checkpoint") == b"racer %d" % wins[0]


def test_keys_are_checked(store):
    for bad in ("../x", "a//b", "/abs", "a/./b", ""):
        with pytest.raises(ValueError):
            store.get(bad)


def test_log_on_the_store_is_auditable(store):
    log = TransparencyLog.create(store, [SIGNER])
    log.append(items(0, 257))
    log.append(items(257, 3))
    size, entries = audit(None, lambda key: store.get(key))
    assert size == 260
    assert TransparencyLog.open(store, [SIGNER]).head().checkpoint.size == 260


def test_s3_object_lock_retention_and_checksums(s3_bucket):
    endpoint, bucket = s3_bucket
    store = S3Store.connect(bucket, "locked", endpoint_url=endpoint, options=S3Options(retention_days=1))
    store.put_immutable("tile/0/000.p/1", leaf_hash(b"x"))
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    head = client.head_object(Bucket=bucket, Key="locked/tile/0/000.p/1")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    version = head["VersionId"]
    with pytest.raises(client.exceptions.ClientError):
        client.delete_object(Bucket=bucket, Key="locked/tile/0/000.p/1", VersionId=version)


def test_s3_errors_are_translated(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = S3Store.connect("no-such-bucket", "", endpoint_url=s3_endpoint)
    with pytest.raises(StorageError) as err:
        store.put_immutable("x", b"1")
    assert "no-such-bucket" in str(err.value) and "test" not in str(err.value).replace("no-such-bucket", "")


def test_s3_unreachable_endpoint_is_transient(monkeypatch):
    from pipelines.demo.services import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = open_store("s3://b/p", s3_endpoint=f"http://127.0.0.1:{free_port()}")
    store.client.meta.config.retries["max_attempts"] = 1
    with pytest.raises(StorageError) as err:
        store.get("checkpoint")
    assert err.value.transient


def test_racing_sequencers_on_s3_produce_no_fork(s3_bucket):
    endpoint, bucket = s3_bucket
    TransparencyLog.create(S3Store.connect(bucket, "race", endpoint_url=endpoint), [SIGNER])
    results, errors = [], []

    def worker(start: int) -> None:
        try:
            log = TransparencyLog.open(S3Store.connect(bucket, "race", endpoint_url=endpoint), [SIGNER])
            for i in range(6):
                results.append(log.append(items(start + i, 1)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (0, 500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(i for r in results for i in r.values()) == list(range(12))
    store = S3Store.connect(bucket, "race", endpoint_url=endpoint)
    assert audit(None, store.get)[0] == 12


def test_other_signer_cannot_take_over(s3_bucket):
    endpoint, bucket = s3_bucket
    store = S3Store.connect(bucket, "owned", endpoint_url=endpoint)
    TransparencyLog.create(store, [SIGNER])
    with pytest.raises(Exception, match="not signed by any trusted key"):
        TransparencyLog.create(store, [Signer.generate("test.example/log")])


def test_s3_server_side_encryption_is_requested(s3_bucket):
    endpoint, bucket = s3_bucket
    store = S3Store.connect(bucket, "sse", endpoint_url=endpoint, options=S3Options(sse="AES256"))
    store.put_immutable("tile/0/000.p/1", leaf_hash(b"y"))
    store.put_if_version("checkpoint", b"cp", None)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for key in ("sse/tile/0/000.p/1", "sse/checkpoint"):
        assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
