"""In a real Chromium against a live `sepguard serve`: a page on another port cannot act with the
victim's cookie, a sign-in link works once, no secret reaches the server log, and the sign-in page
over plain http renders its warning as markup (issue items 8, 9 and 15)."""

import base64
import functools
import http.server
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.helpers import dataset_zip

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]

ATTACK_PAGE = """<!doctype html><html><body><script>
const target = %(target)s, queued = %(queued)s, finished = %(finished)s;
const zip = Uint8Array.from(atob(%(zip)s), c => c.charCodeAt(0));
async function attack() {
  const form = new FormData();
  form.append("dataset", new Blob([zip], {type: "application/zip"}), "d.zip");
  const tries = [
    fetch(target + "/api/v1/jobs", {method: "POST", mode: "no-cors", credentials: "include", body: form}),
    fetch(target + "/api/v1/jobs/" + queued + "/cancel", {method: "POST", mode: "no-cors", credentials: "include"}),
    fetch(target + "/api/v1/jobs/" + finished, {method: "DELETE", credentials: "include"}),
  ];
  for (const t of tries) { try { await t; } catch (e) { /* blocked by the browser: fine */ } }
  document.title = "done";
}
attack();
</script>
<form id="f" method="post" target="sink" action="%(form_action)s"></form><iframe name="sink"></iframe>
</body></html>"""


def api(live_server: Any, path: str, token: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(
        live_server.base_url + path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def insert_jobs(live_server: Any, token: str) -> tuple[str, str]:
    """A queued job (no task sent, so no worker takes it) and a failed one, owned by ``token``."""
    script = (
        "import sys\n"
        "from app.core.db import session_scope\n"
        "from app.core.security import authenticate\n"
        "from app.db_models import Job\n"
        "with session_scope() as s:\n"
        "    owner = authenticate(s, sys.argv[1])\n"
        "    jobs = [Job(owner_id=owner.id, status=st, params={}) for st in ('queued', 'failed')]\n"
        "    s.add_all(jobs)\n"
        "    s.flush()\n"
        "    print(jobs[0].id, jobs[1].id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, token], cwd=ROOT, env=live_server.env, capture_output=True, text=True, check=True
    )
    queued, failed = out.stdout.split()
    return queued, failed


@pytest.fixture
def attacker_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A plain web server on another port of the same host (same site, another origin)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_page_on_another_port_cannot_upload_cancel_or_delete(
    browser: Any, live_server: Any, attacker_site: tuple[Path, str]
) -> None:
    token = live_server.create_token("victim")
    queued, failed = insert_jobs(live_server, token)
    context = browser.new_context()
    page = context.new_page()
    page.goto(live_server.login_link("victim"))
    page.wait_for_url(live_server.base_url + "/")
    assert any(c["name"] == "sepguard_session" for c in context.cookies())

    folder, origin = attacker_site
    values = {
        "target": json.dumps(live_server.base_url),
        "queued": json.dumps(queued),
        "finished": json.dumps(failed),
        "zip": json.dumps(base64.b64encode(dataset_zip()).decode()),
        "form_action": f"{live_server.base_url}/api/v1/jobs/{queued}/cancel",
    }
    (folder / "attack.html").write_text(ATTACK_PAGE % values)
    page.goto(f"{origin}/attack.html")
    page.wait_for_function("() => document.title === 'done'", timeout=60_000)
    page.evaluate("() => document.getElementById('f').submit()")  # a classic cross-site form post too
    page.wait_for_timeout(1500)

    status, listing = api(live_server, "/api/v1/jobs", token)
    assert status == 200 and listing["total"] == 2, listing  # no job was uploaded
    assert api(live_server, f"/api/v1/jobs/{queued}", token)[1]["status"] == "queued"  # not cancelled
    assert api(live_server, f"/api/v1/jobs/{failed}", token)[0] == 200  # not deleted

    # the victim's own page still works with the same cookie
    page.goto(f"{live_server.base_url}/jobs/{queued}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_function("() => document.getElementById('job').dataset.status === 'cancelled'", timeout=30_000)
    context.close()


def test_a_sign_in_link_works_once(browser: Any, live_server: Any) -> None:
    live_server.create_token("once")
    link = live_server.login_link("once")
    assert "#code=" in link and "token" not in link
    first = browser.new_context()
    page = first.new_page()
    page.goto(link)
    page.wait_for_url(live_server.base_url + "/")
    assert page.url == live_server.base_url + "/"  # the code left the address bar
    first.close()

    second = browser.new_context()
    page = second.new_page()
    page.goto(link)
    error = page.locator("#code-error")
    error.wait_for(state="visible")
    assert "already used" in error.inner_text()
    assert page.url == live_server.base_url + "/login"
    assert not any(c["name"] == "sepguard_session" for c in second.cookies())
    second.close()


def test_no_secret_reaches_the_server_log(browser: Any, live_server: Any) -> None:
    token = live_server.create_token("logged")
    link = live_server.login_link("logged")
    context = browser.new_context()
    page = context.new_page()
    page.goto(link)
    page.wait_for_url(live_server.base_url + "/")
    session_id = next(c["value"] for c in context.cookies() if c["name"] == "sepguard_session")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    api(live_server, "/api/v1/jobs", token)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_server.base_url + "/login")
    context.close()
    log = live_server.log_text()
    assert "POST /login/code" in log and "GET /api/v1/jobs" in log  # the access log is on
    for secret in (token, link.split("#code=")[1], session_id, csrf):
        assert secret not in log
    assert "token=" not in log


def test_sign_in_page_over_plain_http_shows_its_warning_as_markup(browser: Any, live_server: Any) -> None:
    """The page opened as http://lan-host (not this machine): the warning renders once, above a working form."""
    context = browser.new_context()
    page = context.new_page()

    def via_lan_name(route: Any) -> None:
        path = route.request.url.split("lan-host.example", 1)[1]
        request = urllib.request.Request(live_server.base_url + path, headers={"Host": "lan-host.example"})
        with urllib.request.urlopen(request, timeout=30) as r:
            route.fulfill(status=r.status, headers=dict(r.headers), body=r.read())

    page.route("http://lan-host.example/**", via_lan_name)
    page.goto("http://lan-host.example/login")
    note = page.locator("#insecure-note")
    assert note.count() == 1 and note.is_visible()
    assert "http://lan-host.example" in note.inner_text()
    text = page.locator("main").inner_text()
    assert text.count("This page was opened over plain") == 1
    assert "<" not in text and "autofocus" not in text and "{%" not in text
    field = page.get_by_label("Access token")
    assert field.is_visible() and field.get_attribute("type") == "password"
    context.close()


def test_api_docs_load_nothing_from_outside_under_the_pages_csp(browser: Any, live_server: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    response = page.goto(live_server.base_url + "/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_text("POST", exact=True).first.wait_for(timeout=30_000)  # Swagger UI rendered the operations
    assert page.get_by_text("/api/v1/jobs", exact=True).first.is_visible()
    assert all(url.startswith((live_server.base_url, "data:")) for url in requested), requested
    assert not [p for p in problems if "Content Security Policy" in p], problems
    context.close()
