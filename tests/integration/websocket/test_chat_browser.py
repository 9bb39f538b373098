"""The chat demo (examples/chat) in a real browser: two headless Chromium pages, driven by Debian's chromedriver
through selenium. What one page sends reaches the other through the server's push, and the page itself is served
by the static handler."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from programs import need
from serverkit import wait_until

REPO = Path(__file__).resolve().parents[3]
CHAT = REPO / "examples" / "chat" / "server.py"
SCREENSHOT = REPO / "build" / "chat-browser.png"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def chat_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(CHAT)], env={**os.environ, "PORT": str(port), "WORKERS": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_until(listening, timeout=20, message="the chat server did not start")
        yield url
    finally:
        os.killpg(process.pid, 15)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = need("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=900,700", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=need("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_message_typed_in_one_page_appears_in_the_other(chat_server: str, browser: webdriver.Chrome) -> None:
    driver = browser
    driver.get(chat_server)
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(chat_server)
    second = driver.current_window_handle

    def online(handle: str) -> bool:
        driver.switch_to.window(handle)
        return driver.find_element(By.ID, "status").text == "online"

    wait_until(lambda: online(first) and online(second), timeout=15, message="the pages did not connect")

    driver.switch_to.window(first)
    driver.find_element(By.ID, "name").clear()
    driver.find_element(By.ID, "name").send_keys("alice")
    driver.find_element(By.ID, "text").send_keys("hello from the first page")
    driver.find_element(By.ID, "send").click()

    def shown_in_second() -> bool:
        driver.switch_to.window(second)
        return "hello from the first page" in driver.find_element(By.ID, "log").text

    wait_until(shown_in_second, timeout=15, message="the message never reached the second page")
    line = driver.find_element(By.ID, "log").text
    assert "alice" in line
    SCREENSHOT.parent.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT))
