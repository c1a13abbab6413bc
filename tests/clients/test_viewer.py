"""The live viewer in a real browser: Debian's chromium, headless, driven by Selenium, against a real
server streaming a shared clip. A screenshot lands in test-artifacts/viewer.png."""

import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from staa_serve.clients.overlay import blend_pixels
from tests.conftest import REPO, clip_path

BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@contextlib.contextmanager
def viewer_of(target: str):
    """``staa-viewer`` streaming a shared clip to the server at ``target``; yields the page's URL."""
    process = subprocess.Popen([str(BIN / "staa-viewer"), str(clip_path("flipping_pancake.mkv")),
                                "--server", target, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "viewer on http://127.0.0.1:" in line, line
        yield line.split("viewer on ")[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def viewer_url(server):
    with viewer_of(server.target) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are missing: `make test` installs Debian's chromium and chromium-driver")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,800", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {script}")


def test_page_overlays_the_heatmap_lists_predictions_and_counts(browser, viewer_url, default_model):
    browser.get(viewer_url)
    wait_for(browser, "return window.staaViewer.windows >= 2 && window.staaViewer.lastRender && "
                      "window.staaViewer.lastRender.hottest !== null")
    assert browser.execute_script("return window.staaViewer.framesShown") > 10
    labels = browser.execute_script("return Array.from(document.querySelectorAll('#topk tr td:first-child'))"
                                    ".map(td => td.textContent)")
    assert len(labels) == 5 and set(labels) <= set(default_model.labels)
    render = browser.execute_script("""
        const r = window.staaViewer.lastRender, [x, y] = r.hottest, o = 4 * (y * r.width + x);
        return {raw: Array.from(r.raw.slice(o, o + 3)), shown: Array.from(r.shown.slice(o, o + 3)),
                heat: r.hottestHeat, alpha: r.alpha, colormap: r.colormap};""")
    # where the heatmap is hottest the canvas is not the raw frame ...
    assert render["heat"] >= 200 and np.abs(np.subtract(render["shown"], render["raw"])).sum() > 30
    # ... and the browser blended exactly as clients/overlay.py does (one colormap, one rule)
    expected = blend_pixels(np.array(render["raw"], np.uint8), np.array(render["heat"], np.uint8), render["alpha"],
                            render["colormap"])
    assert np.abs(expected.astype(int) - np.array(render["shown"])).max() <= 1, (expected, render)
    first = browser.execute_script("return window.staaViewer.stats")
    time.sleep(2.0)
    second = wait_for(browser, f"const s = window.staaViewer.stats; return s.frames_sent > {first['frames_sent']} && "
                               f"s.windows > {first['windows']} ? s : null")
    assert second["latency_ms"] > 0 and second["fps"] > 0
    counters = browser.find_element("id", "counters").text
    assert "end-to-end latency" in counters and "dropped frames" in counters
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "viewer.png"))


def test_method_selector_reopens_the_stream_with_class_sensitive_maps(browser, viewer_url):
    browser.get(viewer_url)
    wait_for(browser, "return window.staaViewer.windows >= 1")
    assert browser.execute_script("return window.staaViewer.explanation.method") == "staa"
    browser.execute_script("const s = document.getElementById('method'); s.value = 'staa_class'; s.onchange();")
    wait_for(browser, "return window.staaViewer.explanation && window.staaViewer.explanation.method === 'staa_class'")
    assert browser.execute_script("return window.staaViewer.error") is None
    browser.execute_script("const s = document.getElementById('method'); s.value = 'staa'; s.onchange();")
    wait_for(browser, "return window.staaViewer.explanation.method === 'staa'")


def test_toggles_reopen_the_stream_with_the_new_options(browser, viewer_url):
    browser.get(viewer_url)
    wait_for(browser, "return window.staaViewer.windows >= 1")
    browser.find_element("id", "focus").click()  # focusing off: gamma 1
    wait_for(browser, "return document.getElementById('focus').checked === false")
    before = browser.execute_script("return window.staaViewer.windows")
    wait_for(browser, f"return window.staaViewer.windows > {before} + 1")  # the re-opened stream keeps explaining
    assert browser.execute_script("return window.staaViewer.error") is None
    browser.find_element("id", "focus").click()


def test_a_single_model_server_shows_no_model_choice(browser, viewer_url):
    browser.get(viewer_url)
    wait_for(browser, "return window.staaViewer.windows >= 1")
    assert browser.execute_script("return document.getElementById('model-choice').hidden") is True


@pytest.fixture(scope="module")
def two_model_viewer_url(tiny_model_dir):
    from staa_serve.server.app import BackgroundServer
    from tests.conftest import served_config

    with BackgroundServer(served_config(port=0, more_models=(f"tiny={tiny_model_dir}",))) as server:
        with viewer_of(server.target) as url:
            yield url


def test_the_model_selector_switches_the_stream_to_another_served_model(browser, two_model_viewer_url):
    browser.get(two_model_viewer_url)
    wait_for(browser, "return window.staaViewer.windows >= 1")
    assert browser.execute_script("return window.staaViewer.explanation.grid") == [8, 8, 8]  # the default model
    assert browser.execute_script("return document.getElementById('model-choice').hidden") is False
    options = browser.execute_script("return [...document.getElementById('model').options].map((o) => o.value)")
    assert options == ["staa-synthkinetics", "tiny"]
    browser.execute_script("const s = document.getElementById('model'); s.value = 'tiny'; s.onchange();")
    wait_for(browser, "return window.staaViewer.explanation.grid.join() === '4,4,4'")  # the tiny model's windows
    wait_for(browser, "return document.getElementById('source').textContent.endsWith('on tiny')")
    assert browser.execute_script("return window.staaViewer.error") is None
