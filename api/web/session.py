"""Console sign-in: an API key exchanged for a signed session cookie, and CSRF tokens.

The cookie holds the key's id (never the key), the person's name where an ERP key is shared,
a CSRF token and the sign-in time; it is signed (itsdangerous, HMAC-SHA1 over a key derived from
the session secret), HttpOnly, SameSite=Strict, Secure over HTTPS, and expires. Every request
looks the key up again, so revoking it ends its sessions at once. Every form carries the
session's CSRF token; the sign-in form (before any session) carries one from its own cookie.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from api.web.i18n import Translator, language
from application.access import Principal
from infrastructure.bootstrap import Services
from infrastructure.settings import Settings

SESSION_COOKIE = "fapiao_session"
SIGN_IN_COOKIE = "fapiao_sign_in"
LANG_COOKIE = "fapiao_lang"
SIGN_IN_MAX_AGE = 3600


class SignInRequired(Exception):
    """No valid session: the console sends the browser to the sign-in page."""

    def __init__(self, expired: bool = False) -> None:
        self.expired = expired


class CsrfRefused(Exception):
    """A form without this session's CSRF token: refused with 403, nothing done."""


def session_secret(settings: Settings) -> str:
    """The configured secret, else one kept beside the signing keys (made on first use, except in
    production, where it must be configured so that every API process shares it)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    if settings.environment == "production":
        raise RuntimeError("set FAPIAO_SESSION_SECRET (32+ characters) to serve the console")
    return _kept_secret((settings.keys_dir or settings.data_dir / "keys").resolve())


@cache
def _kept_secret(folder: Path) -> str:
    path = folder / "console-session.secret"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _serializer(request: Request, salt: str) -> URLSafeTimedSerializer:
    """Signed with the process's secret (the first database's settings: every cell alike)."""
    settings: Settings = request.app.state.services.settings
    return URLSafeTimedSerializer(session_secret(settings), salt=salt)


@dataclass
class Viewer:
    """Who is looking at a console page: their principal, language and CSRF token."""

    principal: Principal
    lang: str
    csrf: str
    tenant_name: str
    t: Translator = field(init=False)

    def __post_init__(self) -> None:
        self.t = Translator(self.lang)

    @property
    def who(self) -> str:
        """The person as the top bar names them: their name, else the key."""
        return self.principal.user or f"key:{self.principal.key_id}"


def lang_of(request: Request) -> str:
    return language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def remember_language(request: Request, response: Response) -> None:
    """`?lang=en` switches and is remembered in a cookie (a year)."""
    chosen = request.query_params.get("lang")
    if chosen and language(chosen) == chosen and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=365 * 86400,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )


def session_tenant(request: Request, services: Services) -> str | None:
    """The tenant a valid session cookie names (which cell serves its pages), else None."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(request, "session").loads(
            raw, max_age=int(services.settings.session_hours * 3600)
        )
    except BadSignature:
        return None
    tenant = data.get("t") if isinstance(data, dict) else None
    return tenant if isinstance(tenant, str) else None


def viewer(request: Request, services: Services) -> Viewer:
    """The signed-in viewer, or SignInRequired."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        raise SignInRequired()
    max_age = int(services.settings.session_hours * 3600)
    try:
        data: dict[str, Any] = _serializer(request, "session").loads(raw, max_age=max_age)
    except BadSignature:
        raise SignInRequired(expired=True) from None
    principal = services.keys.principal_for(str(data.get("k", "")))
    if principal is None or principal.tenant_id != data.get("t"):
        raise SignInRequired(expired=True)
    user = data.get("u")
    if user:
        principal = Principal(
            principal.tenant_id, principal.key_id, principal.roles, str(user), True
        )
    return Viewer(
        principal, lang_of(request), str(data["c"]), services.keys.tenant_name(principal.tenant_id)
    )


def start_session(
    request: Request, response: Response, services: Services, principal: Principal
) -> None:
    token = _serializer(request, "session").dumps(
        {
            "k": principal.key_id,
            "t": principal.tenant_id,
            "u": principal.user,
            "c": secrets.token_urlsafe(24),
        }
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(services.settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def sign_in_token(request: Request, services: Services) -> tuple[str, str | None]:
    """The sign-in form's CSRF token, and the cookie to set when it is new (else None)."""
    serializer = _serializer(request, "sign-in")
    raw = request.cookies.get(SIGN_IN_COOKIE)
    if raw:
        try:
            return str(serializer.loads(raw, max_age=SIGN_IN_MAX_AGE)), None
        except BadSignature:
            pass
    token = secrets.token_urlsafe(24)
    return token, serializer.dumps(token)


def keep_sign_in_token(request: Request, response: Response, cookie: str | None) -> None:
    if cookie is not None:
        response.set_cookie(
            SIGN_IN_COOKIE,
            cookie,
            max_age=SIGN_IN_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            path="/",
        )


def check_sign_in_token(request: Request, services: Services, sent: str) -> None:
    raw = request.cookies.get(SIGN_IN_COOKIE, "")
    try:
        expected = str(_serializer(request, "sign-in").loads(raw, max_age=SIGN_IN_MAX_AGE))
    except BadSignature:
        raise CsrfRefused() from None
    if not hmac.compare_digest(expected, sent):
        raise CsrfRefused()


def check_csrf(viewer_: Viewer, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(viewer_.csrf, sent):
        raise CsrfRefused()
