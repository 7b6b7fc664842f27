"""Fixtures for the service tests (``data_dir`` comes from tests/conftest.py)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.core.security import create_token


@pytest.fixture
def tokens(data_dir: Path) -> dict[str, str]:
    """Tokens of two owners, alice and bob."""
    with session_scope() as session:
        return {"alice": create_token(session, "alice", "test"), "bob": create_token(session, "bob", "test")}


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c
