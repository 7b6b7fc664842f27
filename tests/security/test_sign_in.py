"""Sign-in and cross-site requests (issue items 8-10): a browser's cookie only ever changes
something from the service's own pages, sign-in cannot be forged, and nothing is read from an
unauthenticated request beyond its headers."""

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.core.security import create_login_code, get_or_create_owner
from tests.app.helpers import bearer, dataset_zip, job_count

JOBS = "/api/v1/jobs"
ORIGIN = "https://testserver"


@pytest.fixture
def browser_client(data_dir: Path) -> Iterator[TestClient]:
    """The application over https, as a browser sees it (the session cookie is Secure)."""
    from app.main import create_app

    with TestClient(create_app(), base_url=ORIGIN) as c:
        yield c


def sign_in(client: TestClient, token: str) -> str:
    """Sign in with a pasted token; returns the page's CSRF token."""
    assert (
        client.post("/login", data={"token": token}, headers={"Origin": ORIGIN}, follow_redirects=False).status_code
        == 303
    )
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def upload(client: TestClient, headers: dict[str, str]):
    return client.post(JOBS, headers=headers, files={"dataset": ("d.zip", dataset_zip(), "application/zip")})


def queued_job(client: TestClient, token: str) -> str:
    r = upload(client, bearer(token))
    assert r.status_code == 202, r.text
    return r.json()["id"]


# 8. CSRF -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the cookie alone, as a cross-site form or no-cors fetch sends it
        {"Origin": "http://127.0.0.1:9999", "Sec-Fetch-Site": "same-site"},  # another port of the same host
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"X-CSRF-Token": "guessed", "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"},
    ],
    ids=["cookie-only", "same-site-other-port", "cross-site", "wrong-token"],
)
def test_cookie_upload_without_same_origin_proof_is_403(
    browser_client: TestClient, tokens: dict[str, str], headers: dict[str, str]
) -> None:
    sign_in(browser_client, tokens["alice"])
    r = upload(browser_client, headers)
    assert r.status_code == 403 and "cross-site request refused" in r.json()["detail"]
    assert job_count() == 0


def test_a_stolen_csrf_token_is_still_refused_from_another_origin(
    browser_client: TestClient, tokens: dict[str, str]
) -> None:
    csrf = sign_in(browser_client, tokens["alice"])
    r = upload(browser_client, {"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert r.status_code == 403
    r = upload(browser_client, {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = upload(browser_client, {"X-CSRF-Token": csrf, "Origin": "null"})  # an opaque origin, e.g. a sandboxed frame
    assert r.status_code == 403
    assert job_count() == 0
    r = upload(browser_client, {"X-CSRF-Token": csrf, "Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 202  # what the page itself sends under a strict referrer policy


def test_the_pages_own_requests_pass(browser_client: TestClient, tokens: dict[str, str]) -> None:
    csrf = sign_in(browser_client, tokens["alice"])
    r = upload(browser_client, {"X-CSRF-Token": csrf, "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert browser_client.get(f"{JOBS}/{job_id}").status_code == 200  # reads need no proof
    r = browser_client.post(f"{JOBS}/{job_id}/cancel", headers={"X-CSRF-Token": csrf, "Origin": ORIGIN})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert browser_client.delete(f"{JOBS}/{job_id}", headers={"X-CSRF-Token": csrf}).status_code == 204


def test_cookie_cancel_and_delete_without_proof_are_403(browser_client: TestClient, tokens: dict[str, str]) -> None:
    job_id = queued_job(browser_client, tokens["alice"])
    sign_in(browser_client, tokens["alice"])
    assert browser_client.post(f"{JOBS}/{job_id}/cancel").status_code == 403
    forged = {"Origin": "https://evil.example"}
    assert browser_client.delete(f"{JOBS}/{job_id}", headers=forged).status_code == 403
    assert browser_client.get(f"{JOBS}/{job_id}", headers=bearer(tokens["alice"])).json()["status"] == "queued"


def test_bearer_requests_are_unaffected(browser_client: TestClient, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["bob"]) | {"Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"}
    job_id = queued_job(browser_client, tokens["bob"])
    assert browser_client.post(f"{JOBS}/{job_id}/cancel", headers=headers).status_code == 200


def test_sign_out_is_a_post_with_proof(browser_client: TestClient, tokens: dict[str, str]) -> None:
    csrf = sign_in(browser_client, tokens["alice"])
    assert browser_client.get("/logout").status_code == 405
    assert (
        browser_client.post(
            "/logout", headers={"Origin": "https://evil.example"}, data={"csrf_token": csrf}
        ).status_code
        == 403
    )
    assert browser_client.get("/", follow_redirects=False).status_code == 200  # still signed in
    assert browser_client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert browser_client.get("/", follow_redirects=False).status_code == 303


# 9. Login CSRF and secrets in URLs -----------------------------------------------------------------


def test_a_token_in_the_url_signs_nobody_in(browser_client: TestClient, tokens: dict[str, str]) -> None:
    r = browser_client.get("/login", params={"token": tokens["alice"]}, follow_redirects=False)
    assert r.status_code == 200 and "set-cookie" not in r.headers
    assert browser_client.get("/", follow_redirects=False).status_code == 303


def test_a_cross_site_sign_in_form_is_refused(browser_client: TestClient, tokens: dict[str, str]) -> None:
    r = browser_client.post(
        "/login", data={"token": tokens["alice"]}, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers


def login_code(name: str, lifetime: timedelta = timedelta(minutes=15)) -> str:
    with session_scope() as session:
        return create_login_code(session, get_or_create_owner(session, name), lifetime)


def test_a_sign_in_code_works_once(browser_client: TestClient, tokens: dict[str, str]) -> None:
    code = login_code("alice")
    r = browser_client.post("/login/code", data={"code": code, "next": "/jobs/x"})
    assert r.status_code == 200 and r.json() == {"next": "/jobs/x"}
    cookie = r.cookies["sepguard_session"]
    assert cookie and cookie != code
    assert browser_client.get("/", follow_redirects=False).status_code == 200
    again = browser_client.post("/login/code", data={"code": code})
    assert again.status_code == 401 and "already used" in again.json()["detail"]


def test_an_expired_or_cross_site_code_is_refused(browser_client: TestClient, tokens: dict[str, str]) -> None:
    expired = login_code("alice", timedelta(seconds=-1))
    assert browser_client.post("/login/code", data={"code": expired}).status_code == 401
    fresh = login_code("alice")
    assert (
        browser_client.post("/login/code", data={"code": fresh}, headers={"Sec-Fetch-Site": "cross-site"}).status_code
        == 403
    )
    assert browser_client.post("/login/code", data={"code": fresh}).status_code == 200  # not used up by the refusal


def test_revoking_the_token_ends_its_sessions(browser_client: TestClient, tokens: dict[str, str]) -> None:
    from app.core.security import revoke_token

    sign_in(browser_client, tokens["alice"])
    with session_scope() as session:
        revoke_token(session, tokens["alice"])
    assert browser_client.get("/", follow_redirects=False).status_code == 303
    assert browser_client.get(JOBS).status_code == 401


def test_an_expired_session_is_refused(data_dir: Path, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import get_settings
    from app.main import create_app

    monkeypatch.setenv("SEPGUARD_SESSION_MAX_AGE_SECONDS", "1")
    get_settings.cache_clear()
    with TestClient(create_app(), base_url=ORIGIN) as c:
        sign_in(c, tokens["alice"])
        time.sleep(1.5)
        assert c.get(JOBS).status_code == 401
    get_settings.cache_clear()


# 10. Authentication before the body ----------------------------------------------------------------


@pytest.fixture
def live_api(data_dir: Path) -> Iterator[tuple[str, int]]:
    """The application under a real uvicorn server on a free port."""
    import uvicorn

    from app.main import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def send_head_of_upload(address: tuple[str, int], headers: str, declared: int = 50 * 1024 * 1024) -> str:
    """Send the headers and the first 64 KiB of a ``declared``-byte multipart upload, then wait up to
    5 s for an answer: a server that reads the body first never answers."""
    boundary = "sepguardboundary"
    head = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n{headers}"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="dataset"; filename="big.zip"\r\n\r\n'
    ).encode()
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(head + bytes(64 * 1024))
        try:
            return conn.recv(4096).decode("latin-1")
        except TimeoutError:
            return ""


@pytest.mark.parametrize(
    "headers",
    ["", "Authorization: Bearer not-a-token\r\n", "Cookie: sepguard_session=forged\r\n"],
    ids=["no-credentials", "bad-token", "bad-cookie"],
)
def test_unauthenticated_upload_is_refused_before_its_body(live_api: tuple[str, int], headers: str) -> None:
    answer = send_head_of_upload(live_api, headers)
    assert answer.startswith("HTTP/1.1 401"), answer or "no answer within 5 s: the body was being read"


def test_cross_site_cookie_upload_is_refused_before_its_body(live_api: tuple[str, int], tokens: dict[str, str]) -> None:
    from app.core.security import create_session

    with session_scope() as session:
        session_id, _ = create_session(session, get_or_create_owner(session, "alice"), timedelta(hours=1))
    answer = send_head_of_upload(live_api, f"Cookie: sepguard_session={session_id}\r\nOrigin: http://evil.example\r\n")
    assert answer.startswith("HTTP/1.1 403"), answer or "no answer within 5 s: the body was being read"
