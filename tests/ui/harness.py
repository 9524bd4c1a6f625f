"""A real console to drive: ``flightctl-server serve`` on its own PostgreSQL database, simulated
devices (``flightctl-agent simulate``), and Debian's Chromium through chromedriver.

One server and one browser per test module (the machine has two cores). Screenshots are written
when ``FLIGHTCTL_SCREENSHOTS`` names a directory (``make screenshots`` writes docs/ui/).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import requests

from bench import procs
from bench.waiting import poll

BIN = Path(sys.executable).parent
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what: str, check, timeout: float = 60, interval: float = 0.5):
    value, last = poll(check, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
    return value


class Server:
    """``flightctl-server serve`` with a fresh database on the local PostgreSQL."""

    def __init__(self, work: Path, *, port: int | None = None, **settings):
        self.work = work
        self.database = f"ui_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.port, self.agent_port = port or free_port(), free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
        self.env.update({
            "FLIGHTCTL_DATA_DIR": str(work / "data"),
            "FLIGHTCTL_DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.database}",
            "FLIGHTCTL_LOG_LEVEL": "warning", "FLIGHTCTL_ROLLOUT_INTERVAL": "1s",
            "FLIGHTCTL_AGENT_API_WORKERS": "1", "FLIGHTCTL_THREADS": "8",
            **{f"FLIGHTCTL_{k.upper()}": str(v) for k, v in settings.items()}})
        self.log = open(work / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{self.port}",
             "--agent-address", f"127.0.0.1:{self.agent_port}", "--workers", "1"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ca = str(work / "data" / "pki" / "ca.crt")
        token_file = work / "data" / "admin-token"
        wait("the server", lambda: self._up() and token_file.exists(), 120)
        self.token = token_file.read_text().strip()
        self.api = requests.Session()
        self.api.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA (ci/README.md)
        self.api.verify = self.ca
        self.api.headers["Authorization"] = f"Bearer {self.token}"

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited: {(self.work / 'server.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.agent_port), timeout=1):
                pass
            return requests.get(f"{self.base}/healthz", verify=self.ca, timeout=2).ok
        except (OSError, requests.RequestException):
            return False

    def url(self, path: str) -> str:
        return self.base + path

    def create_user(self, username: str, password: str, role: str) -> None:
        subprocess.run([BIN / "flightctl-server", "create-user", username, "--role", role,
                        "--password-stdin"], input=password + "\n", env=self.env, check=True,
                       capture_output=True, text=True, timeout=120)

    def get(self, path: str, **params) -> dict:
        response = self.api.get(self.url(path), params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def put(self, path: str, body: dict) -> dict:
        response = self.api.put(self.url(path), json=body, timeout=30)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def simulate(self, name: str, devices: int, *labels: str, approve: bool = True,
                 failing_share: float = 0.0):
        """``flightctl-agent simulate`` with ``devices`` devices, until stopped; a
        ``failing_share`` of them report a critical disk and a failed application."""
        work = self.work / name
        work.mkdir()
        argv = [BIN / "flightctl-agent", "simulate", "--user-api", self.base, "--ca-file",
                self.ca, "--devices", str(devices), "--status-interval", "5",
                "--work-dir", str(work), "--stats-file", str(work / "stats.json"),
                "--failing-share", str(failing_share)]
        argv += [arg for label in labels for arg in ("--label", label)]
        argv.append("--approve" if approve else "--no-approve")
        log = open(work / "simulator.log", "wb")  # noqa: SIM115 - lives with the process
        return subprocess.Popen(argv, env={**self.env, "FLIGHTCTL_TOKEN": self.token},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def stop_process(process: subprocess.Popen) -> None:
    procs.stop(process, 30)


def chromium():
    """Headless Chromium from Debian, driven through its chromedriver (never a download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromium") or not Path(CHROMEDRIVER).exists():
        raise RuntimeError("the browser tests need Debian's chromium and chromium-driver "
                           "(scripts/install-test-deps.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--ignore-certificate-errors",
                 "--window-size=1400,1000", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    return driver


class Browser:
    """A thin layer over the WebDriver: the few gestures an operator makes."""

    def __init__(self, driver, server: Server):
        self.driver, self.server = driver, server
        self.shots = os.environ.get("FLIGHTCTL_SCREENSHOTS")

    def open(self, path: str) -> None:
        self.driver.get(self.server.url(path))

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector: str):
        found = wait(f"an element {selector!r}", lambda: self.css(selector), 20, 0.2)
        return found[0]

    def text(self, selector: str = "#content") -> str:
        return self.one(selector).text

    def fill(self, selector: str, value: str) -> None:
        field = self.one(selector)
        field.clear()
        field.send_keys(value)

    def set_value(self, selector: str, value: str) -> None:
        """Put ``value`` into a text field at once (typing a whole document is slow)."""
        self.driver.execute_script("arguments[0].value = arguments[1]", self.one(selector), value)

    def click(self, selector: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(3):  # the page may be replaced between finding and clicking
            try:
                self.one(selector).click()
                return
            except StaleElementReferenceException:
                time.sleep(0.3)
        self.one(selector).click()

    def login(self, username: str, password: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/admin/login/?next=/admin/")
        self.fill("#id_username", username)
        self.fill("#id_password", password)
        self.click("input[type=submit]")
        try:
            wait("the overview", lambda: "Overview" in self.driver.title, 20, 0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.driver.current_url} shows "
                                 f"{self.css('body')[0].text[:2000]}") from None

    def until_text(self, needle: str, *, selector: str = "#content", timeout: float = 60,
                   reload: bool = True) -> str:
        """Reload the page until ``needle`` appears in ``selector``'s text."""
        def seen():
            if reload:
                self.driver.refresh()
            found = self.css(selector)
            text = found[0].text if found else ""
            return text if needle in text else None
        return wait(f"{needle!r} on {self.driver.current_url}", seen, timeout, 1.0)

    def screenshot(self, name: str) -> None:
        if self.shots:
            Path(self.shots).mkdir(parents=True, exist_ok=True)
            time.sleep(0.2)  # let the layout settle
            self.driver.save_screenshot(str(Path(self.shots) / f"{name}.png"))


def sso_login(browser, username: str) -> None:
    """Log in to the console through its single sign-on button: the provider's own login form
    (any password: the test issuers accept them), its consent page, then the console."""
    browser.driver.delete_all_cookies()
    browser.open("/admin/login/?next=/admin/")
    browser.click("#sso-login")
    browser.fill("input[name=login]", username)  # the provider's own login form
    browser.fill("input[name=password]", "anything")
    browser.click("button[type=submit]")
    wait("the provider's consent page", lambda: not browser.css("input[name=login]"), 20, 0.2)
    browser.click("button[type=submit]")  # "Continue"
    wait("the console after single sign-on", lambda: "Overview" in browser.driver.title, 30,
         0.3)
