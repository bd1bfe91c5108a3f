"""The MLflow UI on a finished sweep, driven in headless Chromium (Debian's chromium + chromium-driver,
installed by scripts/install_browser.sh; Selenium from the dev extra). No browser: the test fails.

Set INITSWEEP_SCREENSHOTS=DIR to keep the screenshots (runs page, chart view, parent's report image).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import client_for, run_train, store_uri

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1800,1000",
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(base: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                return
        except OSError:
            pass
        assert server.poll() is None, "mlflow ui exited"
        assert time.monotonic() < deadline, "mlflow ui did not answer in time"
        time.sleep(0.5)


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: run scripts/install_browser.sh (as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="initsweep-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for(driver, predicate, what: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = driver.execute_script(predicate)
        except Exception:  # noqa: BLE001 - page still loading
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"the UI did not show {what} within {timeout_s:.0f} s")


def _click_text(driver, tag: str, text: str) -> None:
    """Click the last visible <tag> element whose text is ``text``."""
    found = [e for e in driver.find_elements(By.TAG_NAME, tag) if e.text.strip() == text and e.is_displayed()]
    assert found, f"no {tag} {text!r} on the page"
    found[-1].click()
    time.sleep(0.5)


def _shot(driver, name: str) -> None:
    if out := os.environ.get("INITSWEEP_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(out) / name))


def test_mlflow_ui_in_a_browser_shows_runs_metrics_charts_and_report(tmp_path: Path, browser):
    proc = run_train(["-m", "init=zeros,normal", "trainer.epochs=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("initsweep")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent,) = [r for r in client.search_runs([exp.experiment_id]) if "initsweep.role" in r.data.tags]
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", store_uri(tmp_path)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, server)
        exp_url = f"{base}/#/experiments/{exp.experiment_id}"
        # Runs page in Model training mode, sorted by the metric the sweep optimizes: child runs listed flat.
        ml = "workflowType=machine_learning"
        browser.get(f"{exp_url}/runs?{ml}&orderByKey=metrics.%60val%2Facc_best%60&orderByAsc=false")
        _wait_for(
            browser,
            "const t=document.body.innerText;"
            " return t.includes('init=zeros seed=0') && t.includes('init=normal seed=0')",
            "the child runs",
        )
        _click_text(browser, "button", "Columns")  # choose the metric columns
        for key in ("val/acc_best", "test/acc"):
            _click_text(browser, "span", key)
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        _wait_for(
            browser,
            "const h=[...document.querySelectorAll('[role=columnheader], .ag-header-cell')]"
            ".map(e=>e.innerText).join(' ');"
            "return h.includes('val/acc_best') && h.includes('test/acc')",
            "the chosen metric columns",
        )
        _shot(browser, "runs_page_after.png")
        # Chart view: a learning curve (val/acc) is drawn.
        browser.get(f"{exp_url}/runs?{ml}&compareRunsMode=CHART&orderByKey=metrics.%60val%2Facc_best%60")
        search = _wait_for(
            browser,
            "return document.querySelector('input[placeholder=\"Search metric charts\"]')",
            "the chart search box",
        )
        search.send_keys("val/acc")  # as a user would: only the accuracy charts remain
        _wait_for(
            browser,
            "const plots=[...document.querySelectorAll('.js-plotly-plot')];"
            " return plots.length > 0 && plots.some(p => p.querySelectorAll('path').length > 0)"
            " && document.body.innerText.includes('val/acc')",
            "a drawn val/acc chart",
        )
        time.sleep(1)
        _shot(browser, "chart_view_after.png")
        # The parent's report figure loads.
        report = f"{base}/get-artifact?path=report%2Flearning_curves.png&run_uuid={parent.info.run_id}"
        # The parent's report figure loads in the browser from the UI's artifact endpoint (the one its
        # artifact viewer uses) at its full width.
        browser.get(f"{exp_url}/runs/{parent.info.run_id}/artifacts?{ml}")
        _wait_for(browser, "return document.body.innerText.includes('report')", "the parent's report folder")
        _shot(browser, "parent_artifacts.png")
        width = browser.execute_async_script(
            "const done=arguments[arguments.length-1];"
            "fetch(arguments[0]).then(r=>r.blob()).then(b=>createImageBitmap(b)).then(i=>done(i.width), e=>done(-1));",
            report,
        )
        assert width >= 1000
        _shot(browser, "parent_report.png")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
