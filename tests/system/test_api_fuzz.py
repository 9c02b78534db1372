"""Fuzzing the intake API from its own OpenAPI document (schemathesis): no 5xx, every answer documented.

Bounded here (``ANCHORPIPE_FUZZ_EXAMPLES``, default 60 per operation); run longer on its own with e.g.
``ANCHORPIPE_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/system/test_api_fuzz.py``.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, settings

from pipelines.config import Settings
from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState

EXAMPLES = int(os.environ.get("ANCHORPIPE_FUZZ_EXAMPLES", "60"))


# The document alone, from an app that connects to nothing (building it reaches no service).
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="postgresql://127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0",
                        archive="/nonexistent"), check_state=False).openapi())


@pytest.fixture
def api(db, clean_redis, tmp_path):
    """The API against a real Redis, and an agency key for it."""
    app = create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"), max_body_bytes=65_536,
                              max_records_per_request=200))
    return app, add_agency(PostgresState.connect(db), "agency-a")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_the_api_keeps_its_contract(case, api):
    app, key = api
    # Every check but "schema-valid data is accepted": the record rules (safe integers, depth 64, valid
    # Unicode, one of content and sha256) are stricter than JSON Schema says, and refused with a 422.
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {key}"},
                           excluded_checks=[checks.positive_data_acceptance])
