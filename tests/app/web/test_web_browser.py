"""The web page in a real headless Chromium against a live `sepguard serve` with a real worker."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the live server's upload limit (see conftest)

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
JOB_URL = re.compile(r"/jobs/([0-9a-f]{32})$")
FINISHED = ("succeeded", "failed", "cancelled")
RUN_SECONDS = 480


@pytest.fixture(scope="module")
def owner(browser: Any, live_server: Any) -> Iterator[Any]:
    """A browser context signed in with the login URL that `sepguard serve` printed."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.goto(live_server.login_url)
    page.wait_for_url(live_server.base_url + "/")
    page.close()
    yield context
    context.close()


def job_state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => ({
            status: document.getElementById('job').dataset.status,
            progress: document.getElementById('job-progress').value,
            stage: document.getElementById('job-stage').textContent,
        })"""
    )


@pytest.fixture(scope="module")
def job_run(owner: Any, live_server: Any, small_dataset: Path, screenshots: Path) -> dict[str, Any]:
    """Upload the small dataset with the fast preset (tiny overrides) and watch the job page until it ends."""
    page = owner.new_page()
    page.goto(live_server.base_url + "/")
    page.set_input_files("#dataset", str(small_dataset))
    page.check("input[name=preset][value=fast]")
    page.click("details.advanced summary")
    for field, value in (("epochs", "2"), ("steps", "2"), ("checkpoints", "2"), ("inner_steps", "1"), ("seed", "3")):
        page.fill(f"#{field}", value)
    page.check("#measure")
    page.click("#submit")
    page.wait_for_url(JOB_URL, timeout=120_000)
    job_id = JOB_URL.search(page.url).group(1)

    seen: list[dict[str, Any]] = []
    shot = False
    deadline = time.monotonic() + RUN_SECONDS
    while True:
        state = job_state(page)
        if not seen or seen[-1] != state:
            seen.append(state)
        if not shot and state["status"] == "running" and state["progress"] > 0:
            page.screenshot(path=str(screenshots / "job-running-desktop.png"), full_page=True)
            shot = True
        if state["status"] in FINISHED:
            break
        assert time.monotonic() < deadline, f"the job did not finish: {seen[-5:]}"
        page.wait_for_timeout(200)
    return {"page": page, "id": job_id, "seen": seen, "state": job_state(page)}


def test_sign_in_cookie_and_accessible_upload_form(owner: Any, live_server: Any, screenshots: Path) -> None:
    cookies = {c["name"]: c for c in owner.cookies()}
    cookie = cookies["sepguard_session"]
    assert cookie["value"] != live_server.token and len(cookie["value"]) >= 40  # a session id, never the token
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"

    page = owner.new_page()
    page.goto(live_server.base_url + "/")
    assert page.get_by_role("heading", name="Protect a dataset").is_visible()
    assert page.get_by_role("button", name="Protect").is_visible()
    for name in ("Light · ε = 4/255", "Standard · ε = 8/255", "Strong · ε = 16/255"):
        assert page.get_by_role("radio", name=name).count() == 1
    # every control has a label, and keyboard focus reaches the file picker first
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
            .filter(e => e.tagName !== 'BUTTON' && !(e.labels && e.labels.length))
            .map(e => e.name || e.id)"""
    )
    assert unlabeled == []
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand link
    tabbed = [page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()")]
    for _ in range(6):
        page.keyboard.press("Tab")
        tabbed.append(page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()"))
    assert "dataset" in tabbed
    page.screenshot(path=str(screenshots / "upload-desktop.png"), full_page=True)
    page.close()


def test_paste_a_token_with_the_keyboard_then_sign_out(browser: Any, live_server: Any) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(live_server.base_url + "/")
    assert page.url == live_server.base_url + "/login"
    page.keyboard.type("wrong-token")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert "not valid" in page.get_by_role("alert").inner_text()
    page.get_by_label("Access token").fill(live_server.token)
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.base_url + "/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_server.base_url + "/login")
    assert [c for c in context.cookies() if c["name"] == "sepguard_session"] == []
    page.goto(live_server.base_url + "/")
    assert page.url == live_server.base_url + "/login"
    context.close()


def test_non_archive_and_broken_zip_are_refused_in_words(owner: Any, live_server: Any, tmp_path: Path) -> None:
    page = owner.new_page()
    page.goto(live_server.base_url + "/")
    assert page.locator("label[for=dataset]").inner_text() == "Dataset archive (.zip or .tar.gz, up to 50 MB)"
    notes = tmp_path / "notes.txt"
    notes.write_text("not images")
    page.set_input_files("#dataset", str(notes))
    page.click("#submit")
    error = page.locator("#form-error")
    assert "is not a .zip or .tar.gz archive" in error.inner_text()
    assert page.url == live_server.base_url + "/"

    # a file dropped on the drop zone is checked at once: type, then size against the server's limit
    def drop(name: str, size: int) -> None:
        page.evaluate(
            """([name, size]) => {
                const data = new DataTransfer();
                data.items.add(new File([new Uint8Array(size)], name));
                document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
            }""",
            [name, size],
        )

    drop("photos.rar", 100)
    assert page.locator("#file-info").inner_text().startswith("photos.rar")
    assert "is not a .zip or .tar.gz archive" in error.inner_text()
    drop("huge.zip", MAX_UPLOAD_BYTES + 1)
    assert page.evaluate("() => document.getElementById('dataset').files[0].name") == "huge.zip"
    assert "this server accepts archives up to 50 MB" in error.inner_text()
    page.click("#submit")
    assert "this server accepts archives up to" in error.inner_text()
    assert page.url == live_server.base_url + "/"

    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"this is not a zip archive at all" * 10)
    page.set_input_files("#dataset", str(broken))
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('form-error').textContent.trim().length > 0")
    shown = error.inner_text().strip()

    # the page shows the server's own explanation
    request = urllib.request.Request(
        live_server.base_url + "/api/v1/jobs",
        data=multipart({"preset": "fast"}, "dataset", "broken.zip", broken.read_bytes()),
        headers={
            "Authorization": f"Bearer {live_server.token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(request, timeout=60)
    assert failure.value.code == 400
    assert shown == json.loads(failure.value.read())["detail"]
    assert page.url == live_server.base_url + "/"
    assert page.get_by_role("button", name="Protect").is_enabled()
    page.close()


def test_progress_bar_advances_until_the_job_succeeds(job_run: dict[str, Any], live_server: Any) -> None:
    state = job_run["state"]
    page = job_run["page"]
    assert state["status"] == "succeeded", (
        page.locator("#job-error").inner_text() + "\n" + live_server.log_text()[-3000:]
    )
    values = [s["progress"] for s in job_run["seen"] if s["status"] in ("queued", "running")]
    values.append(state["progress"])
    assert len(set(values)) >= 2, job_run["seen"]
    assert max(values) > values[0]
    assert page.locator("#progress-block").is_hidden()
    assert page.locator("#cancel").is_hidden()


def test_finished_job_shows_previews_measurement_and_screenshots(
    job_run: dict[str, Any], live_server: Any, screenshots: Path
) -> None:
    page = job_run["page"]
    page.wait_for_function(
        """() => {
            const imgs = [...document.querySelectorAll('#previews img')];
            return imgs.length >= 3 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        timeout=30_000,
    )
    figures = page.locator("#previews figure.preview")
    assert figures.count() >= 1
    first = figures.first
    for alt in ("Original", "Protected", "δ amplified"):
        assert first.get_by_alt_text(re.compile("^" + alt)).count() == 1
    assert re.search(r"PSNR \d+\.\d+ dB · SSIM 0\.\d+", first.inner_text())

    metrics = page.locator("#metrics-section")
    assert metrics.is_visible()
    table = metrics.locator("table").first
    headers = table.locator("thead th").all_inner_texts()
    assert "Trained on originals" in headers and "Trained on protected" in headers and "Victim" in headers
    assert "Resolution" in headers and "32 px" in table.locator("tbody").inner_text()  # CIFAR-size: R alone
    # a held-out split of a few images cannot carry a conclusion, and the page says so in words
    assert re.search(r"Caution: only \d+ clean test images", metrics.inner_text())
    assert re.search(r"protected \d+\.\d%–\d+\.\d%", table.locator("tbody").inner_text())
    assert re.search(r"\d+\.\d%", table.locator("tbody").inner_text())
    assert re.search(r"reach \d+\.\d% accuracy on unseen originals, against \d+\.\d%", metrics.inner_text())
    dataset = page.locator("#dataset-section")
    assert dataset.is_visible()
    for shown in ("Images\n40", "Image sizes\n32×32 px", "Formats\nPNG × 40", "Skipped\n0", "Classes (10)"):
        assert shown in dataset.inner_text(), dataset.inner_text()
    assert "40" in page.locator("#job-images").inner_text()

    page.screenshot(path=str(screenshots / "job-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(200)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(screenshots / "job-phone.png"), full_page=True)
    phone = page.context.new_page()
    phone.set_viewport_size(PHONE)
    phone.goto(live_server.base_url + "/")
    phone.wait_for_selector(f"tr[data-job-id='{job_run['id']}']")
    assert phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    phone.screenshot(path=str(screenshots / "upload-phone.png"), full_page=True)
    phone.close()
    page.set_viewport_size(DESKTOP)


def test_download_button_gives_the_protected_zip(job_run: dict[str, Any], small_dataset: Path, tmp_path: Path) -> None:
    page = job_run["page"]
    with page.expect_download() as info:
        page.get_by_role("link", name="Download protected zip").click()
    download = info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert target.name.endswith(".zip")
    with zipfile.ZipFile(small_dataset) as z:
        inputs = sorted(n for n in z.namelist() if not n.endswith("/"))
    with zipfile.ZipFile(target) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
    for name in inputs:
        assert name in names  # same relative paths (PNG stays .png)
    assert "report.json" in names
    text = json.dumps(manifest)
    for name in inputs:
        assert name in text


def test_job_list_shows_the_job(job_run: dict[str, Any], owner: Any, live_server: Any) -> None:
    page = owner.new_page()
    page.goto(live_server.base_url + "/")
    row = page.locator(f"tr[data-job-id='{job_run['id']}']")
    row.wait_for()
    text = row.inner_text()
    assert "succeeded" in text and "40" in text and "100%" in text
    row.get_by_role("link").click()
    page.wait_for_url(re.compile(job_run["id"] + "$"))
    page.close()


def test_someone_else_gets_not_found(browser: Any, live_server: Any, job_run: dict[str, Any]) -> None:
    live_server.create_token("other")
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(live_server.login_link("other"))
    page.wait_for_url(live_server.base_url + "/")
    page.wait_for_function("() => !document.getElementById('jobs-body').textContent.includes('Loading')")
    assert job_run["id"] not in page.content()
    response = page.goto(f"{live_server.base_url}/jobs/{job_run['id']}")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    download = page.request.get(f"{live_server.base_url}/api/v1/jobs/{job_run['id']}/download")
    assert download.status == 404
    context.close()


def test_cancel_then_delete_from_the_job_page(
    owner: Any, live_server: Any, small_dataset: Path, job_run: dict[str, Any]
) -> None:
    page = owner.new_page()
    page.goto(live_server.base_url + "/")
    page.set_input_files("#dataset", str(small_dataset))
    page.check("input[name=preset][value=balanced]")
    page.click("#submit")
    page.wait_for_url(JOB_URL, timeout=120_000)
    job_id = JOB_URL.search(page.url).group(1)
    params = page.request.get(f"{live_server.base_url}/api/v1/jobs/{job_id}").json()["params"]
    assert params["method"] == "sep-fa"  # the balanced preset's method: the form sends none of its own
    assert page.locator("#delete").is_hidden()

    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_function("() => document.getElementById('job').dataset.status === 'cancelled'")
    assert page.locator("#job-cancelled").is_visible()
    page.get_by_role("button", name="Delete job").click()
    page.wait_for_url(live_server.base_url + "/")
    assert len(dialogs) == 2
    page.wait_for_function("() => !document.getElementById('jobs-body').textContent.includes('Loading')")
    assert page.locator(f"tr[data-job-id='{job_id}']").count() == 0
    assert page.goto(f"{live_server.base_url}/jobs/{job_id}").status == 404
    page.close()


BOUNDARY = "sepguardwebtestboundary"


def multipart(fields: dict[str, str], file_field: str, filename: str, content: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


def add_jobs(live_server: Any, token: str, rows: list[dict[str, Any]]) -> None:
    """Job rows of ``token``'s owner (the fields of each) written straight into the server's database."""
    script = (
        "import json, sys\n"
        "from app.core.db import session_scope\n"
        "from app.core.security import authenticate\n"
        "from app.db_models import Job\n"
        "with session_scope() as s:\n"
        "    owner = authenticate(s, sys.argv[1])\n"
        "    s.add_all(Job(owner_id=owner.id, **row) for row in json.loads(sys.argv[2]))\n"
    )
    subprocess.run([sys.executable, "-c", script, token, json.dumps(rows)], cwd=ROOT, env=live_server.env, check=True)


def test_job_list_shows_more_on_request(browser: Any, live_server: Any) -> None:
    token = live_server.create_token("many")
    add_jobs(live_server, token, [{"status": "failed", "error": "x", "params": {}}] * 23)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(live_server.login_link("many"))
    page.wait_for_url(live_server.base_url + "/")
    rows = page.locator("#jobs-body tr[data-job-id]")
    rows.first.wait_for()
    assert rows.count() == 20
    page.get_by_role("button", name="Show more").click()
    page.wait_for_function("() => document.querySelectorAll('#jobs-body tr[data-job-id]').length === 23")
    assert page.get_by_role("button", name="Show more").is_hidden()
    context.close()


def test_running_job_in_words(browser: Any, live_server: Any) -> None:
    """Stage labels, time left and percentages come from the page's one set of words (common.js)."""
    token = live_server.create_token("words")
    reason = "median short side 412 px, capped at 32 px by the preset"
    params = {"eps": 8.0, "method": "sep-fa-vr", "preset": "fast", "resolution": 32, "resolution_reason": reason}
    add_jobs(
        live_server,
        token,
        [{"status": "running", "stage": "train", "progress": 0.25, "eta_seconds": 130, "params": params}],
    )
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(live_server.login_link("words"))
    page.wait_for_url(live_server.base_url + "/")
    errors: list[str] = []  # a refused script or data block (content security policy) is reported here
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.reload()
    row = page.locator("#jobs-body tr[data-job-id]")
    row.wait_for()
    assert "Training the surrogate model" in row.inner_text() and "25%" in row.inner_text()
    row.get_by_role("link").click()
    page.wait_for_url(JOB_URL)
    assert page.locator("#job-stage").inner_text() == "Training the surrogate model…"
    assert page.locator("#job-eta").inner_text() == "about 2 min left"
    assert page.locator("#job-percent").inner_text() == "25%"
    assert page.locator("#job-eps").inner_text() == "ε = 8/255"
    assert page.locator("#job-resolution").inner_text() == "32 px — " + reason
    eta = page.evaluate("() => [7200, 7260, 30, 2, null].map(window.sg.formatEta)")
    assert eta == ["about 2 h left", "about 2 h 1 min left", "about 30 s left", "almost done", "estimating time left"]
    assert errors == []
    context.close()
