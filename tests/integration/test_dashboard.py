"""The dashboard and the API docs in a real browser: Debian's chromium, driven by
Playwright (never a downloaded browser), against a running platform. Every request
the pages make must go to the gateway itself: they work offline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.models import DispatchMode
from faas import Client
from faas.platform import LocalPlatform
from tests.conftest import make_platform

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
KEY = "dashboard-key"
TIMEOUT_MS = 20_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(
        "no chromium here: install Debian's `chromium` (./hack/test.sh does as root)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with make_platform(tmp, DispatchMode.LOCAL, slots=2, env={"FAAS_API_KEY": KEY}) as p:
        yield p


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, platform: LocalPlatform) -> Iterator[Any]:
    """A fresh tab that records every URL it requests."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.requested = []
    tab.on("request", lambda request: tab.requested.append(request.url))
    yield tab
    context.close()
    outside = [url for url in tab.requested if not url.startswith(platform.url)]
    assert not outside, f"the page reached outside the gateway: {outside[:5]}"


def _wait_for_file(path: str) -> str:
    import os
    import time

    print("hello from the task", flush=True)
    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


def test_a_task_appears_runs_and_finishes_on_the_dashboard(
    page: Any, platform: LocalPlatform
) -> None:
    page.goto(platform.url + "/")
    page.fill("#key", KEY)  # the gateway has a key: the page asks for it
    page.click("#login button")
    page.wait_for_selector("#worker-table tr[data-worker]")
    assert page.text_content("#slots") == "2"

    release = Path(platform.config.data_dir) / "release"
    with Client(platform.url, api_key=KEY) as client:
        task = client.register(_wait_for_file).submit(str(release))
        row = f'#task-table tr[data-task="{task.id}"]'
        page.wait_for_selector(f"{row} td.status-RUNNING")
        page.wait_for_function("document.getElementById('running').textContent === '1'")
        release.touch()
        page.wait_for_selector(f"{row} td.status-COMPLETED")
        assert task.result(timeout=30) == "released"

    page.click(row)
    page.wait_for_selector("#detail:not([hidden]) dd.status-COMPLETED")
    assert page.text_content("#detail-id") == task.id
    page.wait_for_function(
        "document.getElementById('detail-logs').textContent.includes('hello from the task')"
    )
    assert page.is_hidden("#cancel")  # nothing left to cancel


def test_a_running_task_is_cancelled_from_the_dashboard(page: Any, platform: LocalPlatform) -> None:
    page.goto(platform.url + "/")
    page.fill("#key", KEY)
    page.click("#login button")
    never = Path(platform.config.data_dir) / "never"
    with Client(platform.url, api_key=KEY) as client:
        task = client.register(_wait_for_file).submit(str(never))
        row = f'#task-table tr[data-task="{task.id}"]'
        page.wait_for_selector(f"{row} td.status-RUNNING")
        page.click(row)
        page.click("#cancel:not([hidden])")
        page.wait_for_selector(f"{row} td.status-CANCELLED")
        assert task.info()["status"] == "CANCELLED"


def test_the_api_docs_render_from_local_assets(page: Any, platform: LocalPlatform) -> None:
    page.set_extra_http_headers({"authorization": f"Bearer {KEY}"})
    page.goto(platform.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "faas" in page.text_content(".swagger-ui .info .title")
    assert page.locator(".opblock-summary-path", has_text="/v1/stats").count() == 1
