"""The linkage report and the model review, looked at as a person would: the report in headless
Chromium, and the MLflow UI on the demo's store from the registry page."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from browser import Chromium, free_port
from conftest import found_record_values, source_values
from tre_link.record.document import SECTION_IDS

SCREENSHOTS = Path(__file__).resolve().parents[1] / "out" / "screenshots"


@pytest.fixture(scope="module")
def record_values(spark, tracked_run):
    return source_values(spark, tracked_run["cfg"])


@pytest.fixture(scope="module")
def browser():
    with Chromium() as chromium:
        yield chromium


def test_report_renders_in_chromium_with_every_section_in_order_and_no_record_value(tracked_run, record_values,
                                                                                    browser):
    cfg = tracked_run["cfg"]
    html_path, pdf_path = Path(cfg.output.report_html_path), Path(cfg.output.report_pdf_path)
    assert html_path.parent == cfg.output.summary_path.parent  # beside summary.json
    browser.events.clear()
    assert browser.open(html_path.resolve().as_uri())
    assert browser.console_errors() == []
    ids = browser.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert ids == list(SECTION_IDS)
    headings = browser.evaluate("Array.from(document.querySelectorAll('section > h2')).map(h => h.textContent)")
    assert headings[0] == "1. Matching statistics" and headings[-1] == "7. The threshold and how it was chosen"
    text = browser.text()
    # the approved run is compared with the approved model, and the gaps are stated in words
    assert "Compared with the approved model" in text and "percentage points" in text
    assert "Within-source duplicates" in text and "Recall by subgroup (truth)" in text
    # every image loaded (inlined, nothing fetched)
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.evaluate("document.images.length") >= 6
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html_path.read_text())
    assert not found_record_values(text, record_values)
    assert not found_record_values(html, record_values)
    shot = browser.screenshot(SCREENSHOTS / "linkage_report.png")
    assert shot.stat().st_size > 20_000
    assert pdf_path.read_bytes()[:5] == b"%PDF-" and pdf_path.stat().st_size > 50_000


@pytest.fixture(scope="module")
def mlflow_ui(tracked_run):
    """`mlflow ui` on the demo's store, on a free loopback port, stopped after the module."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracked_run["cfg"].tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
        proc.wait(30)


def _click_link(browser: Chromium, href_part: str) -> bool:
    """Click the first link whose href holds `href_part`. A link MLflow opens in a new tab (the
    description's markdown links) is followed in this tab instead: the same page, one click."""
    return browser.evaluate(f"""(() => {{
        const link = Array.from(document.querySelectorAll('a')).find(a => (a.getAttribute('href') || '').includes({href_part!r}));
        if (!link) return false;
        if (link.target === '_blank') location.href = link.href; else link.click();
        return true;
    }})()""")


_FRAME_TEXT = """Promise.all(Array.from(document.querySelectorAll('iframe')).map(f =>
    f.srcdoc ? Promise.resolve(f.srcdoc) : fetch(f.src).then(r => r.text()).catch(() => '')))
    .then(texts => texts.some(t => t.includes('Matching statistics')))"""


def test_reviewer_reaches_f1_subgroup_rates_and_report_within_two_clicks_of_the_registry(tracked_run, mlflow_ui,
                                                                                        browser):
    cfg, run_id, version = tracked_run["cfg"], tracked_run["run_id"], tracked_run["candidate_version"]
    name = cfg.mlflow.registered_model
    client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    assert browser.open(f"{mlflow_ui}/#/models/{name}/versions/{version}")
    # the registry page shows the model card: F1 is there with no click at all
    assert browser.wait_for("document.body.innerText.includes('pairwise F1')", 90), browser.text()[:2000]
    browser.screenshot(SCREENSHOTS / "mlflow_model_version.png", full_page=False)
    # click 1: the card's link to the training run, whose page lists F1 and the subgroup rates
    assert _click_link(browser, f"/runs/{run_id}")
    assert browser.wait_for(f"location.hash.includes('/runs/{run_id}')", 30)
    assert browser.wait_for("document.body.innerText.includes('pairwise_f1')", 90), browser.text()[:2000]
    assert "pairwise F1" in browser.text()  # the run's description, above its metrics
    assert browser.wait_for("document.body.innerText.includes('match_rate.ethnic_group')", 30)
    browser.screenshot(SCREENSHOTS / "mlflow_run.png", full_page=False)
    # click 2: the run's artifacts, opened at the report, which MLflow shows in a frame
    assert browser.open(f"{mlflow_ui}/#/models/{name}/versions/{version}")
    assert browser.wait_for("document.body.innerText.includes('pairwise F1')", 90)
    assert _click_link(browser, "artifacts/report/linkage_report.html")  # one click from the registry
    assert browser.wait_for(f"location.hash.includes('/experiments/{experiment_id}/runs/{run_id}/artifacts')", 30)
    assert browser.wait_for(_FRAME_TEXT, 90), browser.text()[:2000]  # the report, in MLflow's frame
    browser.screenshot(SCREENSHOTS / "mlflow_report.png", full_page=False)
