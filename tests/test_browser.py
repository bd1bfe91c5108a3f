"""The MLflow UI on a finished sweep: its REST API, then its pages driven in headless Chromium (Debian's
chromium + chromium-driver, installed by scripts/install_browser.sh; Selenium from the dev extra). No browser:
the test fails.

Set INITSWEEP_SCREENSHOTS=DIR to keep the screenshots of the runs page and the chart view (docs/ui/*_after.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import client_for, run_train
from initsweep.tracking import ui_view

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
ML = "workflowType=machine_learning"


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


def _wait_for(driver, predicate, what: str, timeout_s: float = 60, args: tuple = ()):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = driver.execute_script(predicate, *args)
        except Exception:  # noqa: BLE001 - page still loading
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"the UI did not show {what} within {timeout_s:.0f} s")


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def _shot(driver, name: str) -> None:
    if out := os.environ.get("INITSWEEP_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(out) / name))


def _printed_url(stdout: str, label: str, base: str) -> str:
    """The URL the sweep printed after ``label``, pointed at the test's server instead of the default one."""
    match = re.search(rf"^{label}: (\S+)$", stdout, re.MULTILINE)
    assert match, f"the sweep printed no {label!r} line:\n{stdout}"
    return base + match.group(1)[match.group(1).index("/#/") :]


# The chart view's section headings (and the first chart's title), top to bottom, as the page lists them.
SECTION_ORDER = (
    "const lines=document.body.innerText.split('\\n').map(l=>l.trim());"
    "const names=arguments[0].filter(n=>lines.includes(n));"
    "names.sort((a,b)=>lines.indexOf(a)-lines.indexOf(b));"
    "const drawn=[...document.querySelectorAll('.js-plotly-plot')].some(p=>p.querySelectorAll('path').length>0);"
    "return drawn && names.length===arguments[0].length ? names : null"
)


def test_mlflow_ui_in_a_browser_shows_runs_metrics_charts_and_report(tmp_path: Path, browser, mlflow_ui):
    proc = run_train(["-m", "init=zeros,normal", "trainer.epochs=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("initsweep")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent,) = [r for r in client.search_runs([exp.experiment_id]) if "initsweep.role" in r.data.tags]
    base = mlflow_ui(tmp_path)
    # The server's REST API (what the pages read): the parent and both children, a child's figures.
    by_name = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=initsweep")["experiment"]
    assert by_name["experiment_id"] == exp.experiment_id
    runs = _get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp.experiment_id]})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    assert len(runs) == 3 and sorted(t["initsweep.init"] for t in tags if "mlflow.parentRunId" in t) == [
        "normal",
        "zeros",
    ]
    child_id = next(r["info"]["run_id"] for r, t in zip(runs, tags) if "mlflow.parentRunId" in t)
    files = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={child_id}").get("files", [])
    assert "learning_curves.png" in {f["path"] for f in files}
    # Runs page, first visit (a fresh browser profile), from the link the sweep printed: Model training mode,
    # child runs listed, the summary metrics as columns.
    browser.get(_printed_url(proc.stdout, "Compare runs", base))
    _wait_for(
        browser,
        "const t=document.body.innerText; return t.includes('init=zeros seed=0') && t.includes('init=normal seed=0')",
        "the child runs",
        timeout_s=180,
    )
    _wait_for(
        browser,
        "const h=[...document.querySelectorAll('[role=columnheader], .ag-header-cell')].map(e=>e.innerText.trim());"
        "return arguments[0].every(c=>h.includes(c))",
        "the summary metric columns",
        args=(list(ui_view.COLUMNS),),
    )
    _shot(browser, "runs_page_after.png")
    # Chart view from the printed link: the learning curves come first, drawn; the diagnostics after them.
    browser.get(_printed_url(proc.stdout, "Learning curves", base))
    wanted = [ui_view.CURVES_SECTION, *ui_view.CURVES[:1], "val", "test", "train", "diag", "init"]
    order = _wait_for(browser, SECTION_ORDER, "the chart sections", timeout_s=180, args=(wanted,))
    assert order == wanted, order
    time.sleep(1)
    _shot(browser, "chart_view_after.png")
    # The parent's report figure loads in the browser from the UI's artifact endpoint (the one its
    # artifact viewer uses) at its full width.
    report = f"{base}/get-artifact?path=report%2Flearning_curves.png&run_uuid={parent.info.run_id}"
    browser.get(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/artifacts?{ML}")
    _wait_for(browser, "return document.body.innerText.includes('report')", "the parent's report folder")
    width = browser.execute_async_script(
        "const done=arguments[arguments.length-1];"
        "fetch(arguments[0]).then(r=>r.blob()).then(b=>createImageBitmap(b)).then(i=>done(i.width), e=>done(-1));",
        report,
    )
    assert width >= 1000
    # The report page itself in MLflow's artifact viewer (an HTML artifact in a sandboxed frame): its figures
    # are embedded, so they load there, decoded at full size.
    listed = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={parent.info.run_id}&path=report").get("files", [])
    assert "report/report.html" in {f["path"] for f in listed}, listed
    browser.get("about:blank")  # a new page load: the artifact viewer opens on the file of its URL
    browser.get(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/artifacts/report/report.html?{ML}")
    _wait_for(browser, "return document.querySelector('iframe.mlflow-html-iframe')", "the report page")
    browser.switch_to.frame(browser.find_element("css selector", "iframe.mlflow-html-iframe"))
    images = _wait_for(
        browser,
        "const i=[...document.images]; return i.length && i.every(e=>e.complete) && i.map(e=>[e.naturalWidth, e.alt])",
        "the report's images",
    )
    assert [alt for _, alt in images] == ["learning curves", "signal at initialization"], images
    assert all(w >= 1000 for w, _ in images), images
    browser.switch_to.default_content()


# The names of the runs the page lists (runs table or chart view's run list), its group rows, and the
# legend entries of the val/acc chart ("<group> (val/acc)").
LISTED = (
    "const lines=document.body.innerText.split('\\n').map(l=>l.trim());"
    "return {runs: lines.filter(l=>/^(init=\\S+ seed=\\d+|trial \\d+ .*)$/.test(l)),"
    "groups: lines.filter(l=>l.startsWith('Group: ')), legend: lines.filter(l=>l.endsWith(' (val/acc)'))}"
)


def _listed(driver, url: str, runs: int, charts: bool = False) -> dict:
    """What the page at ``url`` lists once ``runs`` runs (and, in the chart view, the legend) are shown."""
    driver.get(url)
    ready = f"const l=(()=>{{{LISTED}}})(); return l.runs.length>={runs} && (!{str(charts).lower()} || l.legend.length)"
    _wait_for(driver, ready, f"{runs} runs at {url}", timeout_s=180)
    time.sleep(2)  # a page that would list more (another sweep's runs) has them by now
    return driver.execute_script(LISTED)


def test_printed_links_show_only_their_sweep_grouped_by_configuration(tmp_path: Path, browser, mlflow_ui):
    quick = ["trainer.epochs=1", "model.width=8", "diagnostics.enabled=false", "tracking.log_plots=false"]
    quick += ["tracking.system_metrics=false"]
    grid = run_train(["-m", "init=zeros,normal", "seed=0,1,2", *quick], cwd=tmp_path)
    other = run_train(["-m", "init=ones", *quick], cwd=tmp_path)
    study = run_train(["-m", "hparams_search=normal_std", "hydra.sweeper.n_trials=2", *quick], cwd=tmp_path)
    for proc in (grid, other, study):
        assert proc.returncode == 0, proc.stderr
    assert "INITSWEEP_TRIAL" not in study.stdout and "#1 : hparams_search=normal_std" in study.stdout  # launch lines
    base = mlflow_ui(tmp_path)
    grid_names = {f"init={i} seed={s}" for i in ("zeros", "normal") for s in range(3)}
    for label in ("Compare runs", "Learning curves"):
        charts = label == "Learning curves"
        shown = _listed(browser, _printed_url(grid.stdout, label, base), 6, charts)
        assert set(shown["runs"]) == grid_names and len(shown["runs"]) == 6, shown
        assert sorted(g.split()[1] for g in shown["groups"]) == ["init=normal", "init=zeros"], shown  # seeds aggregated
        if charts:  # the curves: one line (mean over the 3 seeds, with its band) per configuration
            assert sorted(e.split()[0] for e in shown["legend"]) == ["init=normal", "init=zeros"], shown
        shown = _listed(browser, _printed_url(other.stdout, label, base), 1, charts)
        assert shown["runs"] == ["init=ones seed=0"], shown
        shown = _listed(browser, _printed_url(study.stdout, label, base), 2, charts)
        assert sorted(r.split()[:2] for r in shown["runs"]) == [["trial", "0"], ["trial", "1"]], shown
    # The experiment's own view (the views menu): every sweep's runs, the study's trials apart.
    exp_id = re.search(r"/experiments/(\d+)/", grid.stdout)[1]
    shown = _listed(browser, f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey={ui_view.VIEW_ID}&{ML}", 7)
    assert set(shown["runs"]) == grid_names | {"init=ones seed=0"}, shown
