"""Rendering console pages: the Jinja2 environment, the filters clerks expect (元 with two
decimals and thousands separators, Beijing times, 大写 amounts, status colours), the freshness
chip every page carries, and one-shot flash messages after a form."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer

from api.web.i18n import Translator
from api.web.session import Viewer, lang_of, remember_language, session_secret
from application.access import (
    ADMINS,
    APPROVERS,
    HISTORY_READERS,
    INVOICE_WRITERS,
    POLICY_WRITERS,
    REVIEWERS,
)
from domain.calendar import SHANGHAI
from infrastructure.bootstrap import Services
from infrastructure.settings import Settings

TEMPLATES = Path(__file__).with_name("templates")
FLASH_COOKIE = "fapiao_flash"

# Ant Design's preset tag colours (console-design.md 0): red = someone must act.
TAG = {
    "acknowledged": "green",
    "issued": "blue",
    "submitted": "blue",
    "re_entered": "blue",
    "submission_failed": "orange",
    "partially_reversed": "orange",
    "missing": "red",
    "rejected": "red",
    "voided": "grey strike",
    "reversed": "grey",
    "drafted": "grey",
    "returned": "orange",
    "reviewed": "blue",
    "approved": "green",
    "withdrawn": "grey",
    "open": "blue",
    "resolved": "green",
    "copy_obtained": "green",
    "certificate_obtained": "green",
    "abandoned": "grey",
    "matched": "green",
    "mismatched": "orange",
    "absent": "red",
    "unknown": "orange",
    "duplicate": "orange",
    "invalid": "red",
}


def money(value: Any) -> str:
    """`1130` -> `1,130.00`; never a float on the way."""
    if value is None or value == "":
        return ""
    return f"{Decimal(str(value)):,.2f}"


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def beijing(value: Any, seconds: bool = True) -> str:
    """A time as a Beijing clerk reads it: `2026-11-20 14:03:07` (the header says +08:00)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    at = _aware(value)
    if at is None:
        return ""
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def utc_title(value: Any) -> str:
    """The same time in UTC, for the hover text."""
    at = _aware(value)
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


DIGITS = "零壹贰叁肆伍陆柒捌玖"
UNITS = ["", "拾", "佰", "仟"]
GROUPS = ["", "万", "亿", "万亿"]


def _group(n: int) -> str:
    """1..9999 in words: 1010 -> 壹仟零壹拾."""
    words, zero = "", False
    for place in (3, 2, 1, 0):
        d = n // 10**place % 10
        if d == 0:
            zero = bool(words)
            continue
        if zero:
            words, zero = words + "零", False
        words += DIGITS[d] + UNITS[place]
    return words


def capital(value: Any) -> str:
    """价税合计（大写）as on the invoice face: 1130.00 -> 壹仟壹佰叁拾圆整."""
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    sign = "（负数）" if amount < 0 else ""
    yuan, cents = divmod(int(abs(amount) * 100), 100)
    groups = []
    while yuan:
        yuan, group = divmod(yuan, 10000)
        groups.append(group)
    words, gap = "", False
    for i in reversed(range(len(groups))):
        if groups[i] == 0:
            gap = bool(words)
            continue
        if words and (gap or groups[i] < 1000):
            words += "零"
        gap = False
        words += _group(groups[i]) + GROUPS[i]
    words = words + "圆" if words else ""
    jiao, fen = divmod(cents, 10)
    if not cents:
        return sign + (words or "零圆") + "整"
    if jiao:
        words += DIGITS[jiao] + "角"
    elif words:
        words += "零"
    return sign + words + (DIGITS[fen] + "分" if fen else "")


def pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters.update(
    money=money, bj=beijing, utc=utc_title, capital=capital, tag=lambda s: TAG.get(s, "grey")
)
templates.env.filters["pretty"] = pretty


def freshness(services: Services) -> dict[str, Any]:
    """The chip on every page: how far the views are behind the log, and the latest seal."""
    head = int(services.ledger.recorder.max_notification_id() or 0)
    position = services.worker("invoice_status").position()
    checkpoint = services.merkle.latest()
    return {
        "head": head,
        "lag": max(head - position, 0),
        "checkpoint": checkpoint,
    }


def _flash_serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(session_secret(settings), salt="flash")


def redirect_with(
    services: Services, target: str, kind: str, title: str, lines: list[str] | None = None
) -> RedirectResponse:
    """After a form: go to `target` (303) and show a message there once."""
    response = RedirectResponse(target, status_code=303)
    body = _flash_serializer(services.settings).dumps({"k": kind, "t": title, "l": lines or []})
    response.set_cookie(FLASH_COOKIE, body, httponly=True, samesite="strict", path="/")
    return response


def page(
    request: Request,
    services: Services,
    v: Viewer | None,
    template: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a console page with the top bar's data, and any flash message, once."""
    lang = v.lang if v else lang_of(request)
    may = {}
    if v is not None:
        p = v.principal
        may = {
            "write": p.may(INVOICE_WRITERS),
            "policy": p.may(POLICY_WRITERS),
            "review": p.may(REVIEWERS),
            "approve": p.may(APPROVERS),
            "history": p.may(HISTORY_READERS),
            "admin": p.may(ADMINS),
        }
    flash = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            flash = _flash_serializer(request.app.state.services.settings).loads(raw)
        except BadSignature:
            flash = None
    response = templates.TemplateResponse(
        request,
        template,
        {
            "v": v,
            "t": v.t if v else Translator(lang),
            "lang": lang,
            "flash": flash,
            "fresh": freshness(services) if v else None,
            "may": may,
            "path": request.url.path,
            "query": request.url.query,
            **context,
        },
        status_code=status_code,
    )
    if raw:
        response.delete_cookie(FLASH_COOKIE, path="/")
    remember_language(request, response)
    return response
