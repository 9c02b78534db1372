"""An archive handed to an auditor may be hostile: every read is bounded by what its format allows, and a
folder archive is never read outside the folder. Each hostile archive is a finding, not a crash, and
`anchorpipe audit` stays within a memory cap while it finds it."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.archive.bundle import MAX_LINE_BYTES
from pipelines.core import tiles
from pipelines.errors import UnusableObject
from pipelines.ledger.tlog import LogReader
from tests.support.archives import GIB, SIGNER, first_bundle, sealed_archive


def _audit_capped(root: Path, cap: int = GIB) -> tuple[subprocess.CompletedProcess[str], int]:
    """`anchorpipe audit` under `prlimit --as` (address space), and its peak resident memory in bytes."""
    (root.parent / "log.vkey").write_text(SIGNER.verifier().text() + "\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run(["prlimit", f"--as={cap}", sys.executable, "-m", "pipelines.cli", "audit", str(root),
                          "--log-vkey", str(root.parent / "log.vkey"), "--workers", "1"],
                         capture_output=True, text=True, timeout=300)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return res, max(peak, before) * 1024


HOSTILE = {
    "tile-dev-zero": lambda root, tmp: _replace(root / "log" / tiles.tile_path(0, 0, 3), Path("/dev/zero")),
    "tile-sparse-10-gib": lambda root, tmp: _sparse(root / "log" / tiles.tile_path(0, 0, 3), 10 * GIB),
    "entries-linked-out": lambda root, tmp: _link_dir(root / "log" / "tile" / "entries", tmp / "elsewhere"),
    "bundle-to-etc-passwd": lambda root, tmp: _replace(first_bundle(root), Path("/etc/passwd")),
    "bundle-sparse-10-gib": lambda root, tmp: _sparse(first_bundle(root), 10 * GIB),
}


def _replace(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def _sparse(path: Path, size: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(size)


def _link_dir(path: Path, elsewhere: Path) -> None:
    os.rename(path, elsewhere)
    path.symlink_to(elsewhere, target_is_directory=True)


@pytest.mark.system
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_audit_makes_a_finding_of_each_hostile_archive_within_a_memory_cap(tmp_path, name):
    root = sealed_archive(tmp_path / "a")
    HOSTILE[name](root, tmp_path)
    res, peak = _audit_capped(root)
    out = res.stdout + res.stderr
    assert res.returncode in (1, 2), out  # FAILED (a finding) or unusable (the log cannot be read): never a crash
    assert "Traceback" not in out and "MemoryError" not in out, out
    assert "PASSED" not in out
    assert "symbolic link" in out or "not a regular file" in out or "bytes or more, over the" in out, out
    print(f"{name}: exit {res.returncode}, peak RSS {peak / 2**20:.0f} MiB")
    assert peak < GIB


@pytest.mark.system
def test_a_200_mb_object_on_s3_is_refused_before_its_body_is_read(s3_bucket):
    """moto over HTTP: the tile's ContentLength is over its bound, so the body is never read."""
    import boto3

    from pipelines.storage.s3 import S3Store

    endpoint, bucket = s3_bucket
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key="log/tile/0/000", Body=b"\0" * (200 << 20))
    import tracemalloc

    store = S3Store.connect(bucket, "log", endpoint_url=endpoint)
    tracemalloc.start()
    try:
        with pytest.raises(UnusableObject, match="over the 8,192 bytes"):
            LogReader(store, [SIGNER.verifier()]).read_tile(0, 0, 256)
        with pytest.raises(UnusableObject, match=f"over the {MAX_LINE_BYTES:,} bytes"):
            store.get("tile/0/000", MAX_LINE_BYTES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"the reads allocated {peak / 2**20:.0f} MiB at their peak"
