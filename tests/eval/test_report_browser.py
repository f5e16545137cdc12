"""The reports opened in headless Chromium: the curves load as pictures and the tables are on screen."""

import shutil

import pytest

from forumtune.eval.compare import compare_runs

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
        yield context.new_page()
        browser.close()


def open_offline(page, html_path):
    page.goto(html_path.resolve().as_uri())
    page.wait_for_load_state("load")


def natural_size(page, selector):
    return page.eval_on_selector(selector, "img => [img.complete, img.naturalWidth, img.naturalHeight]")


def assert_rows_visible(page, table_selector, expected_rows):
    rows = page.locator(f"{table_selector} tr")
    assert rows.count() == expected_rows
    for index in range(rows.count()):
        rows.nth(index).scroll_into_view_if_needed()
        assert rows.nth(index).is_visible()
        box = rows.nth(index).bounding_box()
        assert box["width"] > 0 and box["height"] > 0


def test_run_report_renders_curves_and_tables(page, evaluated_run, artifacts_dir, tmp_path):
    open_offline(page, evaluated_run.run_dir / "report.html")
    complete, width, height = natural_size(page, "img#loss-curve")
    assert complete and width > 0 and height > 0
    assert_rows_visible(page, "table#metrics", 3)  # header, base, fine-tuned
    assert_rows_visible(page, "table#artifacts", 8)  # header, six checks, any
    assert page.locator(".sample").count() == len(evaluated_run.records)
    for target in (tmp_path / "eval-report.png", artifacts_dir / "eval-report.png"):
        page.screenshot(path=str(target), full_page=True)
    assert (artifacts_dir / "eval-report.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_report_renders_both_runs(page, evaluated_run, second_run, artifacts_dir, tmp_path):
    report = compare_runs(evaluated_run.run_dir, second_run.run_dir, out_dir=tmp_path / "compare")
    open_offline(page, report)
    complete, width, height = natural_size(page, "img#loss-curve")
    assert complete and width > 0 and height > 0
    assert page.locator("table#metrics th").nth(1).inner_text() == "alpha"
    assert page.locator("table#metrics th").nth(2).inner_text() == "beta"
    assert_rows_visible(page, "table#metrics", page.locator("table#metrics tr").count())
    page.screenshot(path=str(artifacts_dir / "eval-compare.png"), full_page=True)
