"""Fixtures for the browser tests: a private JupyterLab server and headless Chromium driving it.

Chromium and chromedriver come from the system (Debian: `apt-get install chromium chromium-driver`);
Selenium is given both paths, so it never downloads a browser. Without them the tests skip, unless
RAG_REQUIRE_BROWSER=1 (set by .ci/run) makes that a failure. On a failure, a screenshot and the page
HTML are saved in tests/browser/artifacts/ (git ignores it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("RAG_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("RAG_CHROMEDRIVER", "/usr/bin/chromedriver"))
REQUIRE_VARIABLE = "RAG_REQUIRE_BROWSER"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
WINDOW_SIZE = "1280,900"  # a laptop screen; JupyterLab opens with its file browser beside the notebook
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # needed as root (containers, CI)
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WINDOW_SIZE}",
)
# JupyterLab settings for a quiet, fully rendered notebook: no news pop-up, no update check, and every
# cell in the DOM (windowed rendering would leave cells out of view unrendered).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
_live_drivers: list = []  # the driver to photograph when a test fails


def _missing_browser() -> str | None:
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("the selenium package (pip install -r requirements.txt)")
    if not absent:
        return None
    return (
        f"the browser tests need Chromium and chromedriver; missing: {', '.join(absent)}. "
        "Install them with: apt-get install chromium chromium-driver"
    )


@pytest.fixture(scope="session")
def browser_available() -> None:
    """Skip (or fail, with RAG_REQUIRE_BROWSER=1) when Chromium, its driver or Selenium is missing."""
    reason = _missing_browser()
    if reason is None:
        return
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1 requires them.)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it listens, its token, and the notebook copied into its folder."""

    url: str
    token: str
    notebook: str
    root: Path

    def notebook_url(self) -> str:
        """The address that opens the notebook (the token logs the browser in)."""
        return f"{self.url}/lab/tree/{self.notebook}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _index_folder(root: Path) -> Path:
    """Where Run All builds the index: the test session's shared folder while nothing has built it.

    The root conftest points CHROMA_PATH at a fresh folder for each test session (never the project's
    chroma_db/). The browser tests run first, so Run All builds the sample index there, showing its
    progress bars, and the tests and notebooks after it find that index up to date instead of
    building it again. When it already exists, a private folder keeps the first-run experience.
    """
    shared = os.environ.get("CHROMA_PATH")
    if shared and not Path(shared).exists():
        return Path(shared)
    return root / "chroma_db"


def _lab_environment(root: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: private Jupyter folders and index, no provider."""
    jupyter = root / "jupyter"
    for name, value in LAB_SETTINGS.items():
        path = jupyter / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
        "JUPYTER_DATA_DIR": str(jupyter / "data"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "workspaces"),
        "CHROMA_PATH": str(_index_folder(root)),  # never the project's index
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        # Blank values win over a developer's .env: the offline answerer, whatever is configured.
        "HF_TOKEN": "",
        "RAG_FUNDAMENTALS_ADVANCE_TECHNIQUES_TOKEN": "",
        "LLM_BASE_URL": "",
        "LLM_BACKEND": "",
    }


def _wait_for_server(process: subprocess.Popen, url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser_available) -> Iterator[Lab]:
    """JupyterLab on a free loopback port with a random token, serving a trusted copy of notebook 07."""
    root = tmp_path_factory.mktemp("lab")
    notebook = shutil.copy(next(NOTEBOOKS.glob("07_*.ipynb")), root)
    env = _lab_environment(root)
    # Trusted, as `make lab` makes the course notebooks: saved widget state only displays in a trusted one.
    trust = [sys.executable, "-m", "jupyter", "trust", notebook]
    subprocess.run(trust, env=env, check=True, capture_output=True)
    port, token = _free_port(), secrets.token_urlsafe(24)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = root / "jupyterlab.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=root)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(process, f"{url}/api/status?token={token}", log)
        yield Lab(url, token, Path(notebook).name, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def driver(lab: Lab) -> Iterator:
    """Headless Chromium (the system's, through the system's chromedriver), with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={lab.root / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(lab.root / "chromedriver.log"))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(120)
    browser.rag_token = lab.token  # redacted from saved page HTML
    _live_drivers.append(browser)
    try:
        yield browser
    finally:
        _live_drivers.remove(browser)
        browser.quit()


def save_artifacts(browser, name: str) -> list[Path]:
    """A screenshot and the page HTML (token redacted) under tests/browser/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    screenshot, page = ARTIFACTS / f"{safe}.png", ARTIFACTS / f"{safe}.html"
    browser.save_screenshot(str(screenshot))
    page.write_text(browser.page_source.replace(browser.rag_token, "<token>"), encoding="utf-8")
    return [screenshot, page]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Save what the browser showed when a browser test (or its set-up) fails."""
    report = yield
    if report.failed and report.when in ("setup", "call") and _live_drivers:
        try:
            saved = save_artifacts(_live_drivers[-1], item.name)
        except Exception as error:  # noqa: BLE001 - a dead browser must not hide the real failure
            report.sections.append(("browser artifacts", f"could not be saved: {error}"))
        else:
            report.sections.append(("browser artifacts", "\n".join(str(path) for path in saved)))
    return report
