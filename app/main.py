"""The web application: REST API under /api/v1, health check, and the web page."""

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.api.main import api_router
from app.api.routes import health
from app.schemas import ValidationMessage
from app.web.routes import router as web_router

API_PREFIX = "/api/v1"


LOCATIONS = ("body", "query", "path", "header", "cookie")


def clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors with their location reduced to the field, without the noise of optional fields
    (an invalid optional value fails both "the type" and "None"; only the first says something)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in LOCATIONS][:1] or ["request"]
        if error.get("type") == "none_required":
            continue
        key = (loc[0], str(error.get("msg", "")))
        if key not in seen:
            seen.add(key)
            out.append({"loc": loc, "msg": key[1], "type": str(error.get("type", ""))})
    return out


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """One readable line naming each bad field, e.g. ``eps: Input should be less than or equal to 32``."""
    return "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in errors) or "invalid request"


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with a readable ``detail`` naming the fields, and the individual ``errors``."""
    assert isinstance(exc, RequestValidationError)
    errors = clean_errors(list(exc.errors()))
    body = ValidationMessage.model_validate({"detail": describe_errors(errors), "errors": errors})
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def create_app() -> FastAPI:
    """Build the application."""
    app = FastAPI(
        title="sepguard",
        summary="Protect image datasets from unauthorised training with Self-Ensemble Protection (SEP-FA).",
        version=_version(),
        docs_url=None,  # served by app.web.routes from the installed Swagger UI, under the pages' CSP
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
        responses={422: {"model": ValidationMessage, "description": "Invalid request"}},
    )
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.include_router(api_router, prefix=API_PREFIX)
    app.include_router(health.router, include_in_schema=False)
    app.include_router(web_router)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sepguard")
    except Exception:
        return "0.0.0"


app = create_app()
