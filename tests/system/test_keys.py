"""API keys: list, revoke, rotate with a grace period, expiry; no second key minted by accident."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from pipelines.config import Settings
from pipelines.errors import InputError
from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency, add_auditor, authenticate, list_keys, revoke, rotate
from pipelines.state.postgres import PostgresState


@pytest.fixture
def state(db, clean_redis) -> PostgresState:
    return PostgresState.connect(db)


def status(client: TestClient, key: str) -> int:
    return client.get("/v1/records/x", headers={"Authorization": f"Bearer {key}"}).status_code


def test_adding_an_existing_agency_mints_no_second_key(state):
    add_agency(state, "dept-a")
    with pytest.raises(InputError, match="exists.*rotate"):
        add_agency(state, "dept-a")
    assert len(list_keys(state)) == 1


def test_rotation_keeps_the_old_key_for_its_grace_period_only(state, db, clean_redis, tmp_path):
    client = TestClient(create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path))))
    old = add_agency(state, "dept-a")
    status(client, old)  # the app is warm before the clock starts
    new = rotate(state, "agency", "dept-a", grace_s=3.0)
    assert status(client, old) == 404 and status(client, new) == 404  # both authenticate (no such record)
    time.sleep(3.1)
    assert status(client, old) == 401 and status(client, new) == 404
    assert [k.expires_ms is None for k in list_keys(state)] == [False, True]


def test_revoked_and_expired_keys_stop_working(state):
    key = add_agency(state, "dept-a")
    temp = add_auditor(state, "audit", ["dept-a"], expires_in_s=0.2)
    assert authenticate(state, temp) is not None
    time.sleep(0.3)
    assert authenticate(state, temp) is None
    (info,) = [k for k in list_keys(state) if k.kind == "agency"]
    assert info.id not in key and len(info.id) == 12  # listed by id, never by the key itself
    assert revoke(state, info.id).name == "dept-a"
    assert authenticate(state, key) is None
    with pytest.raises(InputError, match="matches 0 keys"):
        revoke(state, info.id)


def test_key_commands_never_print_stored_keys(state, db, clean_redis):
    env = {**os.environ, "ANCHORPIPE_REDIS_URL": clean_redis, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_ARCHIVE": "/tmp/unused"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    added = cli("agency", "add", "dept-a", "--expires", "90d")
    assert added.returncode == 0 and added.stdout.startswith("ap_") and "90 days" in added.stderr
    again = cli("agency", "add", "dept-a")
    assert again.returncode == 2 and "rotate" in again.stderr
    rotated = cli("agency", "rotate", "dept-a", "--grace", "7d")
    assert rotated.returncode == 0 and rotated.stdout != added.stdout
    listing = cli("key", "list")
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 2 and "expires=never" in listing.stdout
    assert added.stdout.strip() not in listing.stdout and rotated.stdout.strip() not in listing.stdout
    assert cli("agency", "rotate", "dept-a", "--grace", "soon").returncode == 2


def test_an_agency_whose_keys_were_all_revoked_gets_a_new_one(state):
    leaked = add_agency(state, "dept-a")
    (info,) = list_keys(state)
    revoke(state, info.id)
    fresh = rotate(state, "agency", "dept-a", grace_s=0)
    assert authenticate(state, leaked) is None and authenticate(state, fresh).name == "dept-a"
