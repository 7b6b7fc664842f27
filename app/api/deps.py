"""Request dependencies: database session, settings and the authenticated owner.

A request is authenticated by ``Authorization: Bearer <API token>`` or by the browser's session
cookie. A state-changing request authenticated by the cookie must also prove it comes from the
service's own pages: the session's CSRF token in ``X-CSRF-Token``, and no foreign ``Origin`` or
``Sec-Fetch-Site``. The jobs routes check all this before FastAPI reads the request body.
"""

import hmac
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.api.upload_limit import UploadLimitRoute
from app.core.config import Settings, get_settings
from app.core.db import new_session
from app.core.security import authenticate, find_session
from app.db_models import Owner

bearer = HTTPBearer(auto_error=False, description="An API token from `sepguard token create`.")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "X-CSRF-Token"


def get_db() -> Iterator[Session]:
    """A database session for one request."""
    session = new_session()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def same_origin(request: Request) -> bool:
    """No sign of a cross-site request: ``Sec-Fetch-Site`` (if sent) is same-origin or none, and
    ``Origin`` (if sent) names this host. Another port of the same host is another origin."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":  # an opaque origin (sandboxed frame, or a no-referrer page): trust only the browser's word
        return site == "same-origin"
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def csrf_ok(request: Request, expected: str, sent: str | None) -> bool:
    """Same origin and the session's CSRF token sent back (compared in constant time)."""
    return same_origin(request) and sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def resolve_owner(request: Request, session: Session, settings: Settings) -> Owner:
    """The request's owner, by API token or by session cookie (with CSRF proof for changes); raises 401/403."""
    token = bearer_token(request)
    if token is not None:
        owner = authenticate(session, token)
        if owner is None:
            raise unauthorized("invalid or revoked API token")
        return owner
    cookie = request.cookies.get(settings.session_cookie)
    if not cookie:
        raise unauthorized("missing API token")
    web = find_session(session, cookie)
    if web is None:
        raise unauthorized("invalid or expired sign-in; sign in again (or send an API token)")
    if request.method not in SAFE_METHODS and not csrf_ok(request, web.csrf_token, request.headers.get(CSRF_HEADER)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"cross-site request refused: a change made with the sign-in cookie needs the page's {CSRF_HEADER} "
            "header from the same origin (API clients send a Bearer token instead)",
        )
    return web.owner


def get_current_owner(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Owner:
    """The owner of the request's token or session; 401 when missing, unknown or revoked, 403 for a
    cookie-authenticated change without same-origin proof."""
    return resolve_owner(request, session, settings)


CurrentOwner = Annotated[Owner, Depends(get_current_owner)]


def check_request(request: Request) -> None:
    """Authenticate ``request`` in a session of its own (raises 401/403)."""
    session = new_session()
    try:
        resolve_owner(request, session, get_settings())
    finally:
        session.close()


class AuthFirstRoute(UploadLimitRoute):
    """Authenticates a request (and checks its same-origin proof) before its body is read, so an
    unauthenticated or cross-site upload is refused after its headers, not after its last byte."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await run_in_threadpool(check_request, request)
            return await handler(request)

        return checked
