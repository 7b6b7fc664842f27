"""Request dependencies: database session, settings and the authenticated owner."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import new_session
from app.core.security import authenticate
from app.db_models import Owner

bearer = HTTPBearer(auto_error=False, description="An API token from `sepguard token create`.")


def get_db() -> Iterator[Session]:
    """A database session for one request."""
    session = new_session()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def request_token(request: Request, credentials: HTTPAuthorizationCredentials | None, settings: Settings) -> str | None:
    """The token of a request: ``Authorization: Bearer <token>``, else the sign-in cookie."""
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    return request.cookies.get(settings.token_cookie) or None


def get_current_owner(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Owner:
    """The owner of the request's token; 401 when it is missing, unknown or revoked."""
    token = request_token(request, credentials, settings)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API token", headers={"WWW-Authenticate": "Bearer"}
        )
    owner = authenticate(session, token)
    if owner is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API token", headers={"WWW-Authenticate": "Bearer"}
        )
    return owner


CurrentOwner = Annotated[Owner, Depends(get_current_owner)]
