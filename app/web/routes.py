"""The web page: sign-in, the upload form with the job list, and the job page.

Server-rendered Jinja2 templates; the pages talk to the REST API (``/api/v1``) from the browser
with the session cookie that signing in sets, and send the session's CSRF token (in a ``<meta>``
of every page) with each change. Signing in takes an API token pasted into the form, or a
one-time code from a sign-in link (``/login#code=...``: the fragment never reaches the server
log; the page posts it). Everything the pages load is served from ``app/web/static/``.

Words and numbers that change while a job runs (stage labels, time left, percentages, sizes) are
written by the page's scripts alone (``static/common.js``): the server hands them the API's
payloads and raw numbers, so that each has one source.
"""

import hashlib
import importlib.util
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app import crud
from app.api.deps import SessionDep, SettingsDep, csrf_ok, same_origin
from app.core.config import Settings
from app.core.security import create_session, find_session, redeem_login_code, revoke_session, token_row
from app.db_models import ApiToken, Owner, WebSession
from app.schemas import JobCreate
from engine.methods import METHODS as METHOD_TABLE

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".png": "image/png"}
# Swagger UI from the pinned swagger-ui-py package (never a CDN); only what the docs page loads.
_SWAGGER_SPEC = importlib.util.find_spec("swagger_ui")
SWAGGER_DIR = Path(_SWAGGER_SPEC.submodule_search_locations[0]) / "static"  # type: ignore[union-attr,index]
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")

CROSS_SITE = "This request came from another site and was refused. Open the sign-in page and try again."

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

STRENGTHS = [
    {
        "label": "Light",
        "eps": 4,
        "default": False,
        "text": "Practically invisible; weaker protection. For photos where every detail matters.",
    },
    {
        "label": "Standard",
        "eps": 8,
        "default": True,
        "text": "The setting of the SEP paper: hard to see, and models trained on the images learn little.",
    },
    {
        "label": "Strong",
        "eps": 16,
        "default": False,
        "text": "The strongest protection; faint grain can show on smooth areas such as sky or skin.",
    },
]

SPEED_PRESETS = [
    {
        "name": "fast",
        "label": "Fast",
        "default": False,
        "text": "Seconds to minutes on a CPU; good for a first look, weaker protection.",
    },
    {
        "name": "balanced",
        "label": "Balanced",
        "default": True,
        "text": "Minutes on a CPU for a few thousand small images; solid protection.",
    },
    {
        "name": "paper",
        "label": "Paper",
        "default": False,
        "text": "The paper's full settings; the strongest, and needs a GPU worker.",
    },
]

METHODS = [{"name": m.name, "label": m.label} for m in METHOD_TABLE.values()]

NUMBER_FIELDS = [
    {"name": "steps", "label": "Steps T", "hint": "Crafting steps per image."},
    {"name": "checkpoints", "label": "Checkpoints K", "hint": "Surrogate checkpoints in the ensemble."},
    {"name": "inner_steps", "label": "Inner steps M", "hint": "Variance-reduction steps (SEP-FA-VR)."},
    {"name": "epochs", "label": "Surrogate epochs", "hint": "Training epochs of the surrogate."},
    {
        "name": "resolution",
        "label": "Working resolution",
        "hint": "Pixels; empty: chosen from the images, up to the preset's cap. δ is resized to each image.",
    },
    {"name": "seed", "label": "Seed", "hint": "Makes a run repeatable."},
]


def _form_limits() -> dict[str, dict[str, Any]]:
    """The smallest and largest value of every number the form asks for, read from the API's own
    schema of the form, so that the page never allows what the API refuses or refuses what it allows."""
    fields = JobCreate.model_json_schema()["properties"]
    return {name: {"min": f.get("minimum"), "max": f.get("maximum")} for name, f in fields.items()}


FORM_LIMITS = _form_limits()


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


ASSET_VERSION = _asset_version()
STATIC_FILES = {p.name for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in STATIC_TYPES}

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, {"asset_version": ASSET_VERSION, "signed_in": False, **context}, status_code=status_code
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _web_session(request: Request, session: SessionDep, settings: Settings) -> WebSession | None:
    return find_session(session, request.cookies.get(settings.session_cookie))


def _signed_in(web: WebSession) -> dict[str, Any]:
    """What every signed-in page needs: the header's links and the CSRF token for changes."""
    return {"signed_in": True, "csrf_token": web.csrf_token}


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _to_login(request: Request) -> RedirectResponse:
    path = request.url.path
    query = "" if path == "/" else f"?next={quote(path)}"
    return RedirectResponse(f"/login{query}", status_code=status.HTTP_303_SEE_OTHER)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def _insecure_origin(request: Request) -> bool:
    """Plain http to a host other than this machine: browsers drop the Secure sign-in cookie there."""
    host = (request.url.hostname or "").lower()
    return request.url.scheme == "http" and host not in LOOPBACK_HOSTS and not host.endswith(".localhost")


def _login_page(request: Request, error: str | None, target: str | None, status_code: int = 200) -> HTMLResponse:
    context = {"error": error, "next": target, "insecure_host": _insecure_origin(request) and request.url.hostname}
    return _page(request, "login.html", context, status_code=status_code)


def _session_cookie(response: Response, settings: Settings, session_id: str) -> None:
    response.set_cookie(
        settings.session_cookie,
        session_id,
        max_age=settings.session_max_age_seconds,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"


def _start_session(
    session: SessionDep, settings: Settings, owner: Owner, response: Response, token: ApiToken | None = None
) -> Response:
    session_id, _ = create_session(session, owner, timedelta(seconds=settings.session_max_age_seconds), token)
    _session_cookie(response, settings, session_id)
    return response


@router.get("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, settings: SettingsDep, next: str | None = None) -> Response:
    """The sign-in page: paste a token, or open a sign-in link (``/login#code=...``)."""
    if _web_session(request, session, settings) is not None:
        return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    return _login_page(request, None, next)


@router.post("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """Sign in with a pasted token: starts a session (the cookie never holds the token)."""
    if not same_origin(request):
        return _login_page(request, CROSS_SITE, next, status_code=status.HTTP_403_FORBIDDEN)
    row = token_row(session, token.strip())
    if row is None:
        return _login_page(
            request,
            "That token is not valid (or has been revoked). Check it and try again.",
            next,
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    redirect = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    return _start_session(session, settings, row.owner, redirect, row)


@router.post("/login/code")
def login_code(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: Annotated[str, Form()] = "",
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """Exchange a one-time sign-in code (posted by the sign-in page) for a session."""
    if not same_origin(request):
        return JSONResponse({"detail": CROSS_SITE}, status_code=status.HTTP_403_FORBIDDEN)
    owner = redeem_login_code(session, code.strip())
    if owner is None:
        detail = "This sign-in link has expired or was already used. Paste a token, or ask for a new link."
        return JSONResponse({"detail": detail}, status_code=status.HTTP_401_UNAUTHORIZED)
    return _start_session(session, settings, owner, JSONResponse({"next": _safe_next(next)}))


@router.post("/logout")
def logout(
    request: Request, session: SessionDep, settings: SettingsDep, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Sign out: the session ends on the server and the cookie is dropped."""
    web = _web_session(request, session, settings)
    if web is not None:
        if not csrf_ok(request, web.csrf_token, csrf_token):
            return Response(CROSS_SITE, status_code=status.HTTP_403_FORBIDDEN, media_type="text/plain")
        revoke_session(session, request.cookies.get(settings.session_cookie))
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(
        settings.session_cookie, path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )
    return response


@router.get("/", response_class=HTMLResponse)
def index(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The upload form and the owner's jobs."""
    web = _web_session(request, session, settings)
    if web is None:
        return _to_login(request)
    return _page(
        request,
        "index.html",
        {
            **_signed_in(web),
            "max_upload_bytes": settings.max_upload_bytes,
            "strengths": STRENGTHS,
            "speed_presets": SPEED_PRESETS,
            "methods": METHODS,
            "number_fields": NUMBER_FIELDS,
            "limits": FORM_LIMITS,
        },
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, session: SessionDep, settings: SettingsDep, job_id: str) -> Response:
    """One job: live progress, then previews, measured protection and the download."""
    web = _web_session(request, session, settings)
    if web is None:
        return _to_login(request)
    job = crud.get_owned_job(session, web.owner, job_id)
    if job is None:
        return _page(
            request,
            "not_found.html",
            {**_signed_in(web), "message": "There is no job with this id among your jobs."},
            status_code=status.HTTP_404_NOT_FOUND,
        )
    from app.api.routes.jobs import job_public

    # the page's script shows the job from this payload at once, then follows it through the API
    data = job_public(job).model_dump(mode="json", by_alias=True)
    return _page(request, "job.html", {**_signed_in(web), "job": data})


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> Response:
    """The interactive API documentation (Swagger UI), under the pages' content security policy."""
    return _page(request, "docs.html", {"openapi_url": request.app.openapi_url})


@router.get("/docs/static/{name}")
def api_docs_static(name: str) -> Response:
    """Swagger UI's script and stylesheet, from the installed package."""
    return _static_file(SWAGGER_DIR, SWAGGER_FILES, name)


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The page's own stylesheet, scripts and icon."""
    return _static_file(STATIC_DIR, STATIC_FILES, name)


def _static_file(folder: Path, allowed: Collection[str], name: str) -> Response:
    """One of the ``allowed`` files of ``folder``, cached for a day; 404 for any other name."""
    if name not in allowed:
        return Response("not found", status_code=status.HTTP_404_NOT_FOUND, media_type="text/plain")
    path = folder / name
    return FileResponse(
        path,
        media_type=STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
