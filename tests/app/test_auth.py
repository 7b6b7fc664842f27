"""Bearer tokens and the sign-in cookie: only valid, unrevoked tokens get in; tokens are stored hashed."""

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.core.security import authenticate, create_token, find_token, revoke_token
from app.db_models import ApiToken
from tests.app.helpers import bearer


def assert_401(response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str) and "token" in response.json()["detail"]


def test_missing_token_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    assert_401(client.get("/api/v1/jobs"))


def test_unknown_token_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    assert_401(client.get("/api/v1/jobs", headers=bearer("not-a-token")))
    assert_401(client.get("/api/v1/jobs", headers={"Authorization": f"Basic {tokens['alice']}"}))


def test_revoked_token_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    assert client.get("/api/v1/jobs", headers=bearer(tokens["alice"])).status_code == 200
    with session_scope() as session:
        revoke_token(session, tokens["alice"][:8])
    assert_401(client.get("/api/v1/jobs", headers=bearer(tokens["alice"])))
    assert client.get("/api/v1/jobs", headers=bearer(tokens["bob"])).status_code == 200


def test_session_cookie_signs_in_and_a_token_cookie_does_not(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post("/login", data={"token": tokens["bob"]}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()  # the Secure cookie travels over https only; this client speaks http
    client.cookies.set("sepguard_session", r.cookies["sepguard_session"])
    assert client.get("/api/v1/jobs").status_code == 200
    client.cookies.set("sepguard_session", tokens["bob"])  # an API token is not a session
    assert_401(client.get("/api/v1/jobs"))
    client.cookies.set("sepguard_token", tokens["bob"])
    assert_401(client.get("/api/v1/jobs"))


def test_tokens_are_stored_only_as_sha256(data_dir: Path, tokens: dict[str, str]) -> None:
    with session_scope() as session:
        rows = session.scalars(select(ApiToken)).all()
        stored = {row.token_hash for row in rows}
        assert stored == {hashlib.sha256(t.encode()).hexdigest() for t in tokens.values()}
        assert {row.prefix for row in rows} == {t[:8] for t in tokens.values()}
    database = b"".join(p.read_bytes() for p in data_dir.glob("sepguard.sqlite*"))
    for token in tokens.values():
        assert token.encode() not in database


def test_tokens_are_random_and_track_last_use(data_dir: Path) -> None:
    with session_scope() as session:
        first = create_token(session, "carol", "a")
        second = create_token(session, "carol", "b")
    assert first != second and len(first) >= 40
    with session_scope() as session:
        owner = authenticate(session, first)
        assert owner is not None and owner.name == "carol"
        assert find_token(session, first[:8]).last_used_at is not None
        assert find_token(session, second[:8]).last_used_at is None
        assert authenticate(session, "") is None


def test_admin_flag(data_dir: Path) -> None:
    with session_scope() as session:
        token = create_token(session, "root", "x", is_admin=True)
        owner = authenticate(session, token)
        assert owner is not None and owner.is_admin
