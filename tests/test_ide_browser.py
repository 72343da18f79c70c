"""A real browser (headless Chromium) follows the link of ProjectService.Open into the
project's JupyterLab, opens the project's notebook and runs a cell through the gateway.

Runs on SQLite only: the browser sees the same gateway whatever the store.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import expect, sync_playwright
from servers import RunningServer
from test_ide_gateway import create_project, entry, open_project

pytestmark = pytest.mark.parametrize("api_server", ["sqlite"], indirect=True, scope="module")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 60_000


def test_a_browser_runs_the_projects_notebook(api_server: RunningServer) -> None:
    project_id = create_project(api_server)
    folder = api_server.settings.data_dir / "projects" / project_id
    folder.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print('answer:', 6 * 7)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(notebook, folder / "hello.ipynb")
    url, token = entry(open_project(api_server.client(), project_id)[0])

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{url}?sessionToken={token}")
            page.wait_for_url(f"{url}lab**")
            item = page.locator(".jp-DirListing-item", has_text="hello.ipynb")
            expect(item).to_be_visible(timeout=TIMEOUT_MS)
            item.dblclick()
            # A cell run before the kernel is connected is dropped, not queued.
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
            page.locator(".jp-Notebook .jp-CodeCell .cm-content").first.click()
            page.keyboard.press("Shift+Enter")
            output = page.locator(".jp-OutputArea-output", has_text="answer: 42")
            expect(output).to_be_visible(timeout=TIMEOUT_MS)
        finally:
            page.screenshot(path=str(ARTIFACTS / "ide-browser.png"))
            chromium.close()
