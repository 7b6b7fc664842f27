"""The web page's server side against the real application and a real SQLite database."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.db import session_scope
from app.db_models import Job
from app.schemas import JobCreate
from engine.config import MAX_EPS
from tests.app.helpers import bearer

STATIC = Path(__file__).resolve().parents[3] / "app" / "web" / "static"


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    """The real application over https (the sign-in cookie is Secure); data_dir and tokens come from tests/app."""
    from app.main import create_app

    with TestClient(create_app(), base_url="https://testserver") as c:
        yield c


def make_job(owner_token: str, **fields) -> str:
    from app.core.security import authenticate

    with session_scope() as session:
        owner = authenticate(session, owner_token)
        job = Job(owner_id=owner.id, params={"eps": 8.0, "method": "sep-fa-vr", "preset": "fast"}, **fields)
        session.add(job)
        session.flush()
        return job.id


def sign_in(client: TestClient, token: str) -> None:
    r = client.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303


def local_references(html: str) -> list[str]:
    return re.findall(r'(?:src|href|action)="([^"]*)"', html)


def test_unauthenticated_start_page_redirects_to_login(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"


def test_login_form_without_token(client: TestClient) -> None:
    r = client.get("/login")
    assert r.status_code == 200
    assert '<label for="token">' in r.text
    assert 'name="token"' in r.text


def test_sign_in_sets_a_secure_httponly_lax_session_cookie_and_redirects(
    client: TestClient, tokens: dict[str, str]
) -> None:
    r = client.post("/login", data={"token": tokens["alice"]}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("sepguard_session=") and tokens["alice"] not in cookie
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "samesite=lax" in cookie.lower()
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="upload-form"' in page.text


def test_bad_token_shows_the_form_with_an_error(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post("/login", data={"token": "not-a-token"}, follow_redirects=False)
    assert r.status_code == 401
    assert "not valid" in r.text
    assert "set-cookie" not in r.headers


def test_pasted_token_signs_in_and_follows_next(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"])
    r = client.get(f"/jobs/{job_id}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next=/jobs/{job_id}"
    r = client.post("/login", data={"token": tokens["alice"], "next": f"/jobs/{job_id}"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/jobs/{job_id}"


def test_next_never_leaves_the_site(client: TestClient, tokens: dict[str, str]) -> None:
    for target in ("//example.com/x", "https://example.com/", "/\\example.com"):
        r = client.post("/login", data={"token": tokens["alice"], "next": target}, follow_redirects=False)
        assert r.headers["location"] == "/"


def test_logout_ends_the_session(client: TestClient, tokens: dict[str, str]) -> None:
    sign_in(client, tokens["alice"])
    session_id = client.cookies["sepguard_session"]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)
    assert client.get("/logout").status_code == 405  # sign-out is POST
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    assert 'sepguard_session=""' in r.headers["set-cookie"]
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.set("sepguard_session", session_id)  # the old id is dead on the server too
    assert client.get("/", follow_redirects=False).status_code == 303


def test_revoked_token_cookie_no_longer_signs_in(client: TestClient, tokens: dict[str, str]) -> None:
    from app.core.security import revoke_token

    sign_in(client, tokens["alice"])
    with session_scope() as session:
        revoke_token(session, tokens["alice"])
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_upload_form_offers_presets_and_advanced_settings(client: TestClient, tokens: dict[str, str]) -> None:
    sign_in(client, tokens["alice"])
    html = client.get("/").text
    assert re.search(r'<input type="file" id="dataset" name="dataset"[^>]*accept="\.zip,\.tar\.gz', html)
    for eps in ("4", "8", "16"):
        assert f'name="strength" value="{eps}"' in html
        assert f"ε = {eps}/255" in html
    for name in ("fast", "balanced", "paper"):
        assert f'name="preset" value="{name}"' in html
    advanced = html[html.index('<details class="advanced">') : html.index("</details>")]
    assert '<option value="" selected>The speed preset' in advanced  # no method overrides the preset's
    for field in (
        "method",
        "eps",
        "steps",
        "checkpoints",
        "inner_steps",
        "epochs",
        "resolution",
        "seed",
        "output_format",
        "jpeg_quality",
    ):
        assert f'id="{field}"' in advanced and f'for="{field}"' in advanced
    assert re.search(r'<label class="check">\s*<input type="checkbox" name="skip_invalid"', advanced)
    assert 'id="measure"' in html
    assert '<progress id="upload-progress"' in html
    assert 'aria-live="assertive"' in html
    assert f'data-max-bytes="{get_settings().max_upload_bytes}"' in html


def test_the_forms_limits_are_the_apis(client: TestClient, tokens: dict[str, str]) -> None:
    sign_in(client, tokens["alice"])
    html = client.get("/").text
    limits = JobCreate.model_json_schema()["properties"]
    for field in ("steps", "checkpoints", "inner_steps", "epochs", "resolution", "seed", "jpeg_quality"):
        tag = re.search(rf'<input type="number" id="{field}"[^>]*>', html).group(0)
        assert f'min="{limits[field]["minimum"]}"' in tag and f'max="{limits[field]["maximum"]}"' in tag, tag
    assert f'max="{MAX_EPS}"' in re.search(r'<input type="number" id="eps"[^>]*>', html).group(0)


def test_job_page_for_own_job(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"], status="running", stage="train", progress=0.25, eta_seconds=130)
    sign_in(client, tokens["alice"])
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200
    assert f'data-job-id="{job_id}"' in r.text
    assert '<progress id="job-progress" max="1" value="0.25"' in r.text
    # the page's script shows the job from the payload the API serves (its words: test_web_browser.py)
    embedded = re.search(r'<script type="application/json" id="job-data">(.*?)</script>', r.text).group(1)
    served = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["alice"])).json()
    assert json.loads(embedded) == served
    assert served["stage"] == "train" and served["eta_seconds"] == 130


def test_failed_job_page_shows_the_error(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"], status="failed", error="cat/x.txt is not an image")
    sign_in(client, tokens["alice"])
    html = client.get(f"/jobs/{job_id}").text
    assert "The job failed." in html
    assert "cat/x.txt is not an image" in html


def test_someone_elses_job_is_not_found(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"])
    sign_in(client, tokens["bob"])
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 404
    assert "Not found" in r.text
    assert job_id not in r.text
    assert client.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.get("/jobs/not-an-id").status_code == 404


def test_pages_load_nothing_from_outside(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"])
    pages = [client.get("/login").text]
    sign_in(client, tokens["alice"])
    pages += [client.get("/").text, client.get(f"/jobs/{job_id}").text]
    for html in pages:
        for ref in local_references(html):
            assert ref.startswith(("/", "#")) and not ref.startswith("//"), ref
        assert "<script>" not in html  # no inline scripts: the content security policy forbids them
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text.replace("http://www.w3.org/2000/svg", "")), (
            path
        )
    r = client.get("/")
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_static_files(client: TestClient) -> None:
    for name, kind in (
        ("style.css", "text/css"),
        ("common.js", "text/javascript"),
        ("index.js", "text/javascript"),
        ("job.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith(kind)
    assert client.get("/static/routes.py").status_code == 404
    assert client.get("/static/..%2Froutes.py").status_code == 404


def test_login_page_warns_when_the_secure_cookie_cannot_stick(data_dir: Path) -> None:
    from app.main import create_app

    app = create_app()
    with TestClient(app, base_url="http://192.168.1.20:8000") as plain:
        assert 'id="insecure-note"' in plain.get("/login").text
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "https://sepguard.example.org"):
        with TestClient(app, base_url=base) as c:
            assert 'id="insecure-note"' not in c.get("/login").text


def test_cookie_secure_can_be_turned_off_for_plain_http(
    data_dir: Path, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.main import create_app

    monkeypatch.setenv("SEPGUARD_COOKIE_SECURE", "false")
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://lan-host") as c:
        r = c.post("/login", data={"token": tokens["alice"]}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" not in cookie
    get_settings.cache_clear()
