"""API tokens: created at random, stored only as sha256 digests, looked up by digest."""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db_models import ApiToken, Owner, utcnow

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
    session.add(ApiToken(owner=owner, name=token_name.strip(), token_hash=hash_token(token), prefix=token[:PREFIX_CHARS]))
    session.flush()
    return token


def authenticate(session: Session, token: str) -> Owner | None:
    """The owner of a valid, unrevoked token, or None; records when the token was last used."""
    if not token:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return row.owner


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
