"""Browser tests: the console served by a real server (uvicorn on a free loopback port, the
product's own services on a fresh SQLite store and a settable clock), driven by Playwright in
Debian's Chromium (never a downloaded browser). Every request the page makes is checked: one to
any address off this machine fails the test. Screenshots of each page go under the test's tmp
dir (`screenshots/`), the CI artefacts.

No /usr/bin/chromium: skipped, and the run says so; with FAPIAO_REQUIRE_BROWSER=1 (CI sets it)
that is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import uvicorn

from api.http.app import create_app
from application.demo.scenario import DEMO_NAME, DEMO_TENANT, load_demo
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from tests.fakes import SettableClock

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]
REQUIRE = os.environ.get("FAPIAO_REQUIRE_BROWSER", "") not in ("", "0", "no", "false")
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    if REQUIRE:
        raise pytest.UsageError("FAPIAO_REQUIRE_BROWSER is set but /usr/bin/chromium is missing")
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(
                pytest.mark.skip(reason="no /usr/bin/chromium (apt-get install chromium)")
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Console:
    """The running console: its URL, services and clock, and what the browser asked for."""

    base: str
    services: Services
    clock: SettableClock
    shots: Path
    outside: list[str] = field(default_factory=list)

    def key(self, tenant: str, roles: str, name: str = "") -> str:
        self.services.keys.ensure_tenant(tenant, name)
        return self.services.keys.create_key(tenant, roles, roles)[1]


@pytest.fixture
def console(
    sqlite_template: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Console]:
    """`@pytest.mark.demo(count)` loads that many demo invoices before the server starts (set-up
    writes, kept out of the way of the server's own background work)."""
    path = tmp_path / "ledger.db"
    shutil.copy(sqlite_template, path)
    settings = Settings(
        database_url=f"sqlite:///{path}",
        projection_poll_seconds=0.1,
        timer_tick_seconds=0.2,
        environment="test",
        data_dir=tmp_path,
    )
    clock = SettableClock()
    services = build_services(settings, clock)
    demo = request.node.get_closest_marker("demo")
    if demo is not None:
        services.keys.ensure_tenant(DEMO_TENANT, DEMO_NAME)
        load_demo(services.ledger, DEMO_TENANT, count=demo.args[0] if demo.args else 300)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services=services, run_workers=True),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    yield Console(f"http://127.0.0.1:{port}", services, clock, shots)
    server.should_exit = True
    thread.join(timeout=10)
    services.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any, console: Console) -> Iterator[Callable[..., Any]]:
    """A new browser context (its own cookies) with every request checked for loopback."""
    contexts = []

    def make(lang: str = "zh-CN") -> Any:
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, locale=lang, accept_downloads=True
        )

        def guard(route: Any) -> None:
            host = urlparse(route.request.url).hostname or ""
            if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
                route.continue_()
            else:
                console.outside.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield make
    for context in contexts:
        context.close()
    assert console.outside == [], f"requests off this machine: {console.outside}"


def shot(console: Console, page: Any, name: str) -> Path:
    path = console.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(console: Console, page: Any, key: str, person: str = "") -> None:
    page.goto(f"{console.base}/console")
    page.fill("#api-key", key)
    if person:
        page.fill("#person", person)
    page.click("#sign-in")
    page.wait_for_url(f"{console.base}/console")
