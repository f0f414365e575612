"""The explanation page in a real browser: Debian's chromium driven by Selenium through
Debian's chromedriver (deploy/ci/tools.sh installs both; nothing is downloaded), against
afm-serve in a process. Screenshots go to AFM_UI_SCREENSHOTS (default build/ui-screenshots),
printed at the end of each test, for CI to keep."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest

from tests.helpers import INSTANCE, REPO, TOKEN
from tests.helpers.servers import serve, server_env

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("chromedriver") is None,
                       reason="needs Debian's chromium and chromium-driver (deploy/ci/tools.sh "
                              "installs them as root)"),
]
WAIT_S = 20
WIDTH = 1200
NARROW = 420  # px: a phone held upright
HOSTILE = "<img src=x onerror=alert(1)>"
# Flags from this machine's notes: without the background-networking ones Chromium keeps
# trying hosts a closed network refuses.
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--no-first-run", "--disable-extensions", f"--window-size={WIDTH},900",
]


def screenshot_dir() -> Path:
    path = Path(os.environ.get("AFM_UI_SCREENSHOTS", REPO / "build" / "ui-screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which("chromedriver"), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(capsys: pytest.CaptureFixture[str]) -> Iterator[list[Path]]:
    """Where a test's screenshots went, printed whether it passes or fails."""
    saved: list[Path] = []
    yield saved
    with capsys.disabled():
        for path in saved:
            print(f"\nexplanation page screenshot: {path}")


def served(bundle: Path, log: Path) -> AbstractContextManager[tuple[str, Popen[bytes]]]:
    return serve(["--model-dir", str(bundle)], server_env(OMP_NUM_THREADS="1"), log)


def open_page(driver: WebDriver, url: str, query: str = "") -> None:
    driver.get(url + "/ui" + query)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")


def number(x: float, digits: int = 4) -> str:
    """A number as the page writes every number: a true minus sign (U+2212), never a hyphen."""
    text = f"{abs(x):.{digits}f}"
    return f"\u2212{text}" if x < 0 and float(text) != 0 else text


def field_input(driver: WebDriver, name: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'.field input[name="{name}"]')


def wait_for_result(driver: WebDriver, previous: str | None = None) -> None:
    """Until the result shows a score other than `previous` (the one before the request)."""
    def shown(d: WebDriver) -> bool:
        cells = d.find_elements(By.CSS_SELECTOR, '#score [data-name="score"] dd')
        return bool(cells) and cells[0].is_displayed() and cells[0].get_attribute("data-value") != previous
    WebDriverWait(driver, WAIT_S).until(shown)


def score_shown(driver: WebDriver) -> str | None:
    cells = driver.find_elements(By.CSS_SELECTOR, '#score [data-name="score"] dd')
    return cells[0].get_attribute("data-value") if cells else None


def predict(url: str, instance: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(url + "/predict", json={"instances": [instance], "explain": True}, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["predictions"][0]
    return result


def save(driver: WebDriver, name: str, saved: list[Path]) -> None:
    """The whole page, not just the window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, max(900, int(height) + 40))
    path = screenshot_dir() / name
    driver.save_screenshot(str(path))
    driver.set_window_size(WIDTH, 900)
    saved.append(path)


def severe_console_messages(driver: WebDriver) -> list[str]:
    """Script errors and Content-Security-Policy violations land here."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def no_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return True
    return False


def check_matches_predict(driver: WebDriver, expected: dict[str, Any]) -> None:
    """Every number the page shows is the one /predict gives, and each bar's length and side
    follow its contribution."""
    assert float(score_shown(driver) or "nan") == expected["score"]
    assert driver.find_element(By.CSS_SELECTOR, '#score [data-name="prediction"] dd').text == \
        number(expected["prediction"])
    assert driver.find_element(By.CSS_SELECTOR, '#score [data-name="score"] dd').text == \
        number(expected["score"])
    pairs = expected["explanation"]["pairs"]
    rows = driver.find_elements(By.CSS_SELECTOR, "#pairs .pair")
    assert len(rows) == len(pairs["contributions"])
    largest = max(abs(c) for c in pairs["contributions"])
    for row, fields, contribution, attention in zip(rows, pairs["fields"], pairs["contributions"],
                                                    pairs["attention"], strict=True):
        assert row.get_attribute("data-fields") == "\u00d7".join(fields)
        assert float(row.get_attribute("data-contribution") or "nan") == contribution
        assert float(row.get_attribute("data-attention") or "nan") == attention
        sign = "+" if contribution >= 0 else ""
        assert row.find_element(By.CLASS_NAME, "contribution").text == sign + number(contribution)
        assert row.find_element(By.CLASS_NAME, "attention-value").text == f"{attention:.3f}"
        bar = row.find_element(By.CLASS_NAME, "bar")
        side = row.find_element(By.CSS_SELECTOR, ".half.neg" if contribution < 0 else ".half.pos")
        assert bar.find_element(By.XPATH, "..") == side
        assert abs(bar.size["width"] - side.size["width"] * abs(contribution) / largest) <= 1.5
    explanation = expected["explanation"]
    parts = {row.get_attribute("data-part"): row for row in
             driver.find_elements(By.CSS_SELECTOR, "#sum-body tr")}

    def value(part: str) -> float:
        return float(parts[part].find_element(By.CLASS_NAME, "num").get_attribute("data-value") or "nan")

    assert value("bias") == explanation["bias"]
    assert value("interaction") == explanation["interaction"]
    assert value("score") == expected["score"]
    assert parts["score"].find_element(By.CLASS_NAME, "num").text == number(expected["score"])
    linear = [float(row.find_element(By.CLASS_NAME, "num").get_attribute("data-value") or "nan")
              for row in driver.find_elements(By.CSS_SELECTOR, '#sum-body tr[data-part="linear"]')]
    assert linear == explanation["linear"]["weights"]
    assert value("linear-total") == pytest.approx(sum(linear), abs=1e-12)
    assert value("bias") + value("linear-total") + value("interaction") == pytest.approx(
        value("score"), abs=1e-4)
    assert "gap" not in parts
    assert "logit-shift" not in parts  # a model trained on every row
    if "probability" in expected:
        assert value("probability") == expected["probability"]


def test_the_page_explains_an_instance_as_predict_does(bundle_dir: Path, browser: WebDriver,
                                                      tmp_path: Path, screenshots: list[Path]) -> None:
    with served(bundle_dir, tmp_path / "serve.log") as (url, _):
        open_page(browser, url)
        assert [label.text for label in browser.find_elements(By.CSS_SELECTOR, ".field label")] == \
            list(INSTANCE)
        # Typed field by field with the keyboard: Tab between inputs, Enter submits.
        first = field_input(browser, "f0")
        first.click()
        keys: list[str] = []
        for value in INSTANCE.values():
            keys += [value, Keys.TAB]
        first.send_keys(*keys[:-1], Keys.ENTER)
        wait_for_result(browser)
        check_matches_predict(browser, predict(url, INSTANCE))
        assert json.loads(browser.find_element(By.ID, "json").get_attribute("value") or "") == INSTANCE
        assert browser.find_element(By.ID, "oov").is_displayed() is False
        save(browser, "ui-prediction.png", screenshots)

        # The example button fills example 1, an instance of known values, names it, and
        # puts its number in the address; explained with the button.
        before = score_shown(browser)
        browser.find_element(By.ID, "example").click()
        assert browser.find_element(By.ID, "example-link").text == "example 1"
        assert browser.current_url.endswith("/ui?example=1")
        example = json.loads(browser.find_element(By.ID, "json").get_attribute("value") or "")
        assert set(example) == set(INSTANCE)
        for name, value in example.items():
            assert field_input(browser, name).get_attribute("value") == value
        browser.find_element(By.ID, "explain-form").click()
        expected = predict(url, example)
        assert expected["oov"] == []
        if expected["score"] != float(before or "nan"):
            wait_for_result(browser, before)
        check_matches_predict(browser, expected)
        assert severe_console_messages(browser) == []


def shown_instance(driver: WebDriver) -> dict[str, Any]:
    instance: dict[str, Any] = json.loads(driver.find_element(By.ID, "json").get_attribute("value") or "")
    return instance


def test_a_numbered_example_is_the_same_instance_every_time(
        bundle_dir: Path, browser: WebDriver, tmp_path: Path, screenshots: list[Path]) -> None:
    with served(bundle_dir, tmp_path / "serve.log") as (url, _):
        open_page(browser, url, "?example=3")  # filled and explained as the page opens
        wait_for_result(browser)
        third = shown_instance(browser)
        assert set(third) == set(INSTANCE) and browser.find_element(By.ID, "example-line").is_displayed()
        check_matches_predict(browser, predict(url, third))
        save(browser, "ui-example-3.png", screenshots)

        open_page(browser, url, "?example=2")
        wait_for_result(browser)
        assert shown_instance(browser) != third
        browser.find_element(By.ID, "example").click()  # the button moves on to the next number
        assert shown_instance(browser) == third and browser.current_url.endswith("?example=3")
        field_input(browser, "f0").send_keys("x")  # edited: no longer the example the link names
        assert not browser.find_element(By.ID, "example-line").is_displayed()
        assert "example=" not in browser.current_url

        open_page(browser, url, "?example=3")
        wait_for_result(browser)
        assert shown_instance(browser) == third
        open_page(browser, url, "?example=three")
        assert "example must be a whole number" in browser.find_element(By.ID, "error").text
        assert severe_console_messages(browser) == []


def test_a_narrow_screen_keeps_the_bars_and_nothing_spills_sideways(
        bundle_dir: Path, browser: WebDriver, tmp_path: Path, screenshots: list[Path]) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": NARROW, "height": 900, "deviceScaleFactor": 1, "mobile": True})
    with served(bundle_dir, tmp_path / "serve.log") as (url, _):
        open_page(browser, url, "?example=3")
        wait_for_result(browser)
        assert browser.execute_script("return window.innerWidth") == NARROW
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= NARROW, f"the page is {page_width} px wide in a {NARROW} px window"
        for element in browser.find_elements(By.CSS_SELECTOR, "#result *"):
            box = element.rect
            assert box["x"] + box["width"] <= NARROW + 0.5, (element.get_attribute("outerHTML") or "")[:200]
        tracks = [row.find_element(By.CLASS_NAME, "track").size["width"]
                  for row in browser.find_elements(By.CSS_SELECTOR, "#pairs .pair")]
        assert tracks and min(tracks) >= NARROW / 2, tracks  # the bar keeps most of the width
        largest = browser.find_element(By.CSS_SELECTOR, "#pairs .pair .bar").size["width"]
        assert largest >= tracks[0] / 2 - 2  # the largest contribution fills its half
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": NARROW, "height": int(height), "deviceScaleFactor": 1,
                                 "mobile": True})
        path = screenshot_dir() / "ui-narrow.png"
        browser.save_screenshot(str(path))
        screenshots.append(path)
        assert severe_console_messages(browser) == []


def test_values_are_shown_as_text_never_as_html(bundle_dir: Path, browser: WebDriver,
                                                tmp_path: Path, screenshots: list[Path]) -> None:
    with served(bundle_dir, tmp_path / "serve.log") as (url, _):
        open_page(browser, url)
        instance = {**INSTANCE, "f1": HOSTILE}
        box = browser.find_element(By.ID, "json")
        box.clear()
        box.send_keys(json.dumps(instance))
        browser.find_element(By.ID, "explain-json").click()
        wait_for_result(browser)
        expected = predict(url, instance)
        assert expected["oov"] == [{"field": "f1", "value": HOSTILE}]
        check_matches_predict(browser, expected)
        assert field_input(browser, "f1").get_attribute("value") == HOSTILE
        # Flagged out of vocabulary in the form and in the result, as the text typed.
        assert "oov" in (field_input(browser, "f1").find_element(By.XPATH, "..").get_attribute("class") or "")
        assert browser.find_element(By.ID, "oov-items").text == f"f1 = {json.dumps(HOSTILE)}"
        values = [row.find_element(By.CLASS_NAME, "values-of").text
                  for row in browser.find_elements(By.CSS_SELECTOR, "#pairs .pair")
                  if "f1" in (row.get_attribute("data-fields") or "").split("\u00d7")]
        assert len(values) == 5 and all(HOSTILE in text and "OOV" in text for text in values)
        assert browser.find_elements(By.TAG_NAME, "img") == []
        assert no_alert(browser)
        save(browser, "ui-escaping.png", screenshots)

        # A field name the model does not know: the server's error, quoted as text.
        box.clear()
        box.send_keys(json.dumps({"<b id=bold>f9</b>": "v1"}))
        browser.find_element(By.ID, "explain-json").click()
        WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "error").text)
        assert "<b id=bold>f9</b>" in browser.find_element(By.ID, "error").text
        assert browser.find_elements(By.ID, "bold") == [] and no_alert(browser)
        assert severe_console_messages(browser) == [] or all(
            "400" in message for message in severe_console_messages(browser))


def cells(driver: WebDriver) -> dict[str, float]:
    return {cell.get_attribute("data-fields") or "": float(cell.get_attribute("data-value") or "nan")
            for cell in driver.find_elements(By.CSS_SELECTOR, "#heatmap td.pair-cell")}


def test_the_heatmap_shows_the_global_importance(bundle_dir: Path, browser: WebDriver,
                                                 tmp_path: Path, screenshots: list[Path]) -> None:
    with served(bundle_dir, tmp_path / "serve.log") as (url, _):
        importance = httpx.get(url + "/explain", timeout=10).json()["importance"]
        open_page(browser, url)
        tab = browser.find_element(By.ID, "tab-instance")
        tab.send_keys(Keys.ARROW_RIGHT)  # the tabs follow the arrow keys
        WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "td.pair-cell"))
        assert browser.find_element(By.ID, "view-instance").is_displayed() is False
        by_pair = {"\u00d7".join(item["fields"]): item for item in importance}
        assert cells(browser) == {pair: item["mean_attention"] for pair, item in by_pair.items()}

        first = browser.find_element(By.CSS_SELECTOR, "#heatmap td.pair-cell")
        ActionChains(browser).move_to_element(first).perform()
        tooltip = browser.find_element(By.ID, "tooltip")
        WebDriverWait(browser, WAIT_S).until(lambda d: tooltip.is_displayed())
        item = by_pair[first.get_attribute("data-fields") or ""]
        assert tooltip.text.splitlines() == [
            f"{item['fields'][0]} \u00d7 {item['fields'][1]}",
            f"mean attention {item['mean_attention']:.4f}",
            f"mean |contribution| {item['mean_abs_contribution']:.4f}",
        ]
        save(browser, "ui-heatmap.png", screenshots)

        browser.find_element(By.CSS_SELECTOR, 'input[value="mean_abs_contribution"]').click()
        assert cells(browser) == {pair: item["mean_abs_contribution"] for pair, item in by_pair.items()}
        first = browser.find_element(By.CSS_SELECTOR, "#heatmap td.pair-cell")
        first.send_keys(Keys.ARROW_RIGHT)  # the grid is walked with the arrow keys
        focused = browser.switch_to.active_element
        assert focused.get_attribute("data-col") == str(int(first.get_attribute("data-col") or 0) + 1)
        detail = browser.find_element(By.ID, "cell-detail").text
        assert (focused.get_attribute("data-fields") or "?") in detail.replace(" \u00d7 ", "\u00d7")
        save(browser, "ui-heatmap-contribution.png", screenshots)
        assert severe_console_messages(browser) == []


def test_the_form_takes_every_field_kind(mixed_dir: Path, browser: WebDriver, tmp_path: Path) -> None:
    """Numbers for numeric and bucketised fields, a list for a multi-valued one; the
    probability shown for a binary model."""
    with served(mixed_dir, tmp_path / "serve.log") as (url, _):
        open_page(browser, url)
        assert field_input(browser, "price").get_attribute("type") == "number"
        assert field_input(browser, "age").get_attribute("type") == "number"
        assert field_input(browser, "user").get_attribute("list")
        values = {"user": "u3", "tags": "a, c", "price": "61.5", "age": "42"}
        for name, value in values.items():
            field_input(browser, name).send_keys(value)
        browser.find_element(By.ID, "explain-form").click()
        wait_for_result(browser)
        sent = json.loads(browser.find_element(By.ID, "json").get_attribute("value") or "")
        assert sent == {"user": "u3", "tags": ["a", "c"], "price": 61.5, "age": 42}
        expected = predict(url, sent)
        assert float(score_shown(browser) or "nan") == expected["score"]
        assert browser.find_element(By.CSS_SELECTOR, '#score [data-name="probability"] dd').text == \
            number(expected["probability"])
        browser.find_element(By.ID, "example").click()
        example = json.loads(browser.find_element(By.ID, "json").get_attribute("value") or "")
        assert predict(url, example)["oov"] == []
        assert severe_console_messages(browser) == []


def test_the_page_says_when_the_model_changed_under_it(models_root: Path, browser: WebDriver,
                                                       tmp_path: Path) -> None:
    env = server_env(OMP_NUM_THREADS="1", AFM_MODELS_ROOT=str(models_root), AFM_ADMIN_TOKEN=TOKEN)
    with serve(["--model-dir", str(models_root / "v1")], env, tmp_path / "serve.log") as (url, _):
        open_page(browser, url)
        assert "version 1" in browser.find_element(By.ID, "model-line").text
        reloaded = httpx.post(url + "/admin/reload", json={"model_dir": "v2"}, timeout=30,
                              headers={"authorization": f"Bearer {TOKEN}"})
        assert reloaded.status_code == 200, reloaded.text
        browser.find_element(By.ID, "example").click()
        browser.find_element(By.ID, "explain-form").click()
        wait_for_result(browser)
        warning = browser.find_element(By.ID, "warning")
        assert warning.is_displayed() and "version 2" in warning.text and "reload the page" in warning.text
