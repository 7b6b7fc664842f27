"""Requests generated from the OpenAPI schema (valid and invalid) never make the service fail:
no 5xx, and every response is documented and matches its schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from tests.app.helpers import bearer


@pytest.fixture(autouse=True)
def live_worker(data_dir) -> None:
    """A worker's presence beat, as a running service has (without one /healthz is rightly 503)."""
    from worker.presence import beat

    beat()


schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, tokens: dict[str, str]) -> None:
    case.call_and_validate(headers=bearer(tokens["alice"]), checks=CHECKS)
