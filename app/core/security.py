"""API tokens, browser sessions and one-time sign-in codes: created at random, stored only as
sha256 digests, looked up by digest."""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db_models import ApiToken, LoginCode, Owner, WebSession, utcnow

PREFIX_CHARS = 8
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def get_or_create_owner(session: Session, name: str, is_admin: bool = False) -> Owner:
    """The owner called ``name``, created if new (an existing owner is promoted when ``is_admin``)."""
    owner = session.scalar(select(Owner).where(Owner.name == name))
    if owner is None:
        owner = Owner(name=name, is_admin=is_admin)
        session.add(owner)
        session.flush()
    elif is_admin and not owner.is_admin:
        owner.is_admin = True
    return owner


def create_token(session: Session, owner_name: str, token_name: str, is_admin: bool = False) -> str:
    """Create a token for ``owner_name`` (creating the owner if needed) and return it; only its hash is kept."""
    if not owner_name.strip() or not token_name.strip():
        raise ValueError("owner and token names must not be empty")
    owner = get_or_create_owner(session, owner_name.strip(), is_admin)
    token = secrets.token_urlsafe(32)
    session.add(
        ApiToken(owner=owner, name=token_name.strip(), token_hash=hash_token(token), prefix=token[:PREFIX_CHARS])
    )
    session.flush()
    return token


def authenticate(session: Session, token: str) -> Owner | None:
    """The owner of a valid, unrevoked token, or None; records when the token was last used."""
    row = token_row(session, token)
    return row.owner if row is not None else None


def token_row(session: Session, token: str) -> ApiToken | None:
    """The valid, unrevoked token row of ``token``, or None; records when the token was last used."""
    if not token:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, oldest first, with its owner loaded."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def find_token(session: Session, key: str) -> ApiToken:
    """The token whose id or display prefix is ``key``; raises LookupError if none or several match."""
    matches: list[ApiToken] = []
    if key.isdigit():
        by_id = session.get(ApiToken, int(key))
        if by_id is not None:
            matches.append(by_id)
    if not matches:
        matches = list(session.scalars(select(ApiToken).where(ApiToken.prefix == key[:PREFIX_CHARS])))
        if len(key) > PREFIX_CHARS:
            matches = [t for t in matches if hash_token(key) == t.token_hash]
    if not matches:
        raise LookupError(f"no token with id or prefix {key!r}")
    if len(matches) > 1:
        raise LookupError(f"{len(matches)} tokens have the prefix {key!r}; use the id instead")
    return matches[0]


def revoke_token(session: Session, key: str) -> ApiToken:
    """Revoke the token with id or prefix ``key`` (see ``find_token``)."""
    token = find_token(session, key)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    session.flush()
    return token


def create_session(
    session: Session, owner: Owner, max_age: timedelta, token: ApiToken | None = None
) -> tuple[str, WebSession]:
    """A new browser session for ``owner`` (signed in with ``token``, if any): the id for the cookie
    (only its hash is kept) and the row."""
    session_id = secrets.token_urlsafe(32)
    row = WebSession(
        owner_id=owner.id,
        token_id=token.id if token is not None else None,
        session_hash=hash_token(session_id),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + max_age,
    )
    session.add(row)
    session.commit()
    return session_id, row


def find_session(session: Session, session_id: str | None) -> WebSession | None:
    """The live (unexpired, unrevoked) session with this cookie value, or None."""
    if not session_id:
        return None
    row = session.scalar(select(WebSession).where(WebSession.session_hash == hash_token(session_id)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    if row.token is not None and row.token.revoked_at is not None:
        return None
    return row


def revoke_session(session: Session, session_id: str | None) -> None:
    """End the session with this cookie value (sign-out); nothing happens if there is none."""
    if session_id:
        session.execute(
            update(WebSession).where(WebSession.session_hash == hash_token(session_id)).values(revoked_at=utcnow())
        )
        session.commit()


def create_login_code(session: Session, owner: Owner, lifetime: timedelta) -> str:
    """A one-time sign-in code for ``owner``, valid for ``lifetime``; only its hash is kept."""
    code = secrets.token_urlsafe(24)
    session.add(LoginCode(owner_id=owner.id, code_hash=hash_token(code), expires_at=utcnow() + lifetime))
    session.flush()
    return code


def redeem_login_code(session: Session, code: str) -> Owner | None:
    """The owner of an unused, unexpired code, which is used up by this call (at most one caller wins)."""
    if not code:
        return None
    now = utcnow()
    used = session.execute(
        update(LoginCode)
        .where(LoginCode.code_hash == hash_token(code), LoginCode.used_at.is_(None), LoginCode.expires_at > now)
        .values(used_at=now)
    )
    session.commit()
    if used.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = session.scalar(select(LoginCode).where(LoginCode.code_hash == hash_token(code)))
    return session.get(Owner, row.owner_id) if row is not None else None
