"""Notebook 07 in a real browser: Run All Cells in JupyterLab, then use the Q&A app as a learner would.

Elements are found by role, structure and CSS class (the app's `rag-*` classes, ipywidgets' and
JupyterLab's own), never by the course's wording, so rewriting the notebook's prose does not break them.
The tests share one page and run in order: saved state, Run All, then the app.
"""

from __future__ import annotations

import os
import re
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Run All builds the index in a fresh folder (conftest `_index_folder`): seconds on a quiet machine, minutes on a busy 2-core one.
RUN_ALL_TIMEOUT_S = float(os.environ.get("RAG_BROWSER_RUN_ALL_TIMEOUT", "900"))
ASK_TIMEOUT_S = 180.0
CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
APP = "//div[contains(@class,'widget-vbox')][.//textarea][.//button]"  # outermost first in document order
PROMPTS_JS = (
    "return [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
    ".map(e => e.textContent.trim())"
)


def wait_for(browser, condition, timeout: float, what: str):
    """Poll `condition(browser)` until it returns something truthy; fail saying `what` did not happen."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition(browser)
        except (StaleElementReferenceException, WebDriverException):
            value = None
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"Timed out after {timeout:.0f} s waiting for {what}", pytrace=False)


def css(root, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return root.find_elements(By.CSS_SELECTOR, selector)


def the_app(browser):
    """The Q&A app's outermost box (a VBox holding a text area and a button)."""
    from selenium.webdriver.common.by import By

    apps = browser.find_elements(By.XPATH, APP)
    assert apps, "the Q&A app is not displayed"
    return apps[0]


def page_text(browser) -> str:
    return browser.find_element("css selector", "body").text


@pytest.fixture(scope="module")
def page(lab, driver):
    """Notebook 07 open in JupyterLab with its kernel idle, before anything was run."""
    driver.get(lab.notebook_url())
    wait_for(driver, lambda b: css(b, ".jp-Notebook .jp-CodeCell"), 120, "the notebook's cells")
    wait_for(
        driver,
        lambda b: css(b, ".jp-Notebook-ExecutionIndicator[data-status='idle']"),
        120,
        "the rag-course kernel to start (is it registered? run `make setup`)",
    )
    return driver


@pytest.fixture(scope="module")
def ran(page):
    """The page after Run → Run All Cells has finished, every code cell executed in order."""
    menu = next(item for item in css(page, ".lm-MenuBar-item") if item.text.strip() == "Run")
    menu.click()
    run_all = ".lm-Menu-item[data-command='runmenu:run-all']"
    wait_for(page, lambda b: css(b, run_all), 10, "the Run menu")[0].click()
    wait_for(page, lambda b: "[*]:" in b.execute_script(PROMPTS_JS), 60, "the cells to be queued")
    started = time.monotonic()
    prompts = wait_for(
        page,
        lambda b: (p := b.execute_script(PROMPTS_JS)) and "[*]:" not in p and p,
        RUN_ALL_TIMEOUT_S,
        "Run All Cells to finish",
    )
    numbers = [int(m.group(1)) if (m := re.fullmatch(r"\[(\d+)\]:", p)) else None for p in prompts]
    stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    errors = [e.text[-800:] for e in css(page, stderr)]
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"not every cell ran in order in a fresh kernel: {prompts}\nlast stderr output: {errors[-1:] }"
    )
    page.rag_run_all_seconds = time.monotonic() - started
    return page


def test_saved_notebook_shows_its_widgets_before_running(page):
    # The committed outputs carry widget state (`make notebooks`): the app and the bars display at once.
    # Saved widgets display once the kernel is up (the widget manager waits for it).
    wait_for(page, lambda b: b.find_elements("xpath", APP), 180, "the saved app to display")
    assert "Error displaying widget" not in page_text(page)
    app = the_app(page)
    assert css(app, "textarea") and css(app, "select") and css(app, "button")
    assert not [o for o in css(page, ".jp-OutputArea-output") if o.text.startswith(("VBox(", "HBox("))]
    assert css(page, ".jp-OutputArea-output .widget-hprogress .progress-bar"), "no progress bar displayed"


def test_run_all_cells_renders_widgets_progress_bars_and_plots(ran):
    assert "Error displaying widget" not in page_text(ran)
    bars = css(ran, ".jp-OutputArea-output .widget-hprogress .progress-bar")
    assert bars, "progress bars are shown as text instead of bars"
    assert all(bar.size["width"] > 0 for bar in bars), "a progress bar stayed empty"
    as_text = [o.text for o in css(ran, ".jp-OutputArea-output") if re.search(r"\d+%\|", o.text)]
    assert not as_text, f"progress bars shown as text: {as_text[:2]}"
    assert css(ran, ".jp-OutputArea-output img"), "no plot rendered"
    print(f"Run All Cells: {ran.rag_run_all_seconds:.1f} s")


def ask(browser, question: str) -> tuple[str, str]:
    """Type `question`, press Ask, wait until the app shows its result; (answer HTML, status text).

    An answer (or a "don't know") is final once rendered with its classes; while it streams it has none.
    """
    app = the_app(browser)
    answer, status = css(app, ".rag-answer")[0], css(app, ".rag-status")[0]
    before = (answer.get_attribute("innerHTML"), status.text)
    box = css(app, "textarea")[0]
    box.clear()
    if question:
        box.send_keys(question)
    css(app, "button.widget-button")[0].click()
    # Finished when the result changed and is no longer the "searching…" status of a running ask.
    def finished(_browser) -> bool:
        if (answer.get_attribute("innerHTML"), status.text) == before:
            return False
        if question:
            return bool(css(answer, ".rag-cite, .rag-dont-know"))
        return not answer.text.strip()

    wait_for(browser, finished, ASK_TIMEOUT_S, "the app to answer")
    return answer.get_attribute("innerHTML"), status.text


def choose(select_element, predicate) -> str:
    """Pick the first option whose value satisfies `predicate`, like a learner using the dropdown."""
    from selenium.webdriver.support.select import Select

    dropdown = Select(select_element)
    value = next(o.get_attribute("value") for o in dropdown.options if predicate(o.get_attribute("value")))
    dropdown.select_by_value(value)
    return value


def test_the_app_answers_a_question_with_a_cited_highlighted_source(ran):
    from selenium.webdriver.common.keys import Keys

    app = the_app(ran)
    handle = css(app, ".widget-slider [role='slider']")[0]
    k_before = int(float(handle.get_attribute("aria-valuenow")))
    handle.send_keys(Keys.ARROW_RIGHT if k_before < 5 else Keys.ARROW_LEFT)
    def new_k(_browser) -> int:
        value = int(float(handle.get_attribute("aria-valuenow")))
        return value if value != k_before else 0

    k = wait_for(ran, new_k, 10, "k to change")
    def select_offering(value: str):
        """The dropdown (retriever, backend or follow-up strategy) that offers `value`."""
        return next(s for s in css(app, "select")
                    if any(o.get_attribute("value").startswith(value) for o in css(s, "option")))

    retriever_select, backend_select = select_offering("bm25"), select_offering("offline")
    choose(retriever_select, lambda value: value == "bm25")
    choose(backend_select, lambda value: value.startswith("offline"))

    html, status = ask(ran, "What is the nightly hotel cap in London under the 2024 travel policy?")

    answer = css(app, ".rag-answer")[0]
    assert CITATION.search(answer.text), answer.text
    assert css(answer, ".rag-cite") and not css(answer, ".rag-dont-know")
    assert "**" not in answer.text and "| " not in answer.text, f"raw markdown in the answer: {answer.text}"
    assert "bm25" in status and f"k={k}" in status
    panels = css(app, ".rag-sources .jupyter-widget-Collapse")
    assert len(panels) == k, f"{len(panels)} source panels for k={k}"
    opened = css(app, ".rag-sources .jupyter-widget-Collapse-open")
    assert len(opened) == 1, "the first cited source is expanded"
    marks = [m for m in css(opened[0], "mark") if m.is_displayed() and m.text.strip()]
    assert marks, "the cited source shows no highlighted span"
    cut = ran.execute_script(
        """return [...arguments[0].querySelectorAll('mark')].filter(m => {
             const word = /[\\p{L}\\p{N}]/u;
             const before = m.previousSibling ? m.previousSibling.textContent.slice(-1) : '';
             const after = m.nextSibling ? m.nextSibling.textContent.slice(0, 1) : '';
             const text = m.textContent;
             return (word.test(before) && word.test(text[0]))
                 || (word.test(after) && word.test(text.slice(-1)));
           }).map(m => m.textContent.slice(0, 40));""",
        opened[0],
    )
    assert not cut, f"highlights start or end mid-word: {cut}"


def test_an_empty_question_shows_the_apps_hint(ran):
    html, status = ask(ran, "")
    app = the_app(ran)
    assert status.strip(), "no hint for an empty question"
    assert not css(app, ".rag-answer")[0].text.strip(), "an answer is shown for an empty question"
    assert not css(app, ".rag-sources .jupyter-widget-Collapse"), "sources are shown for an empty question"


def start_a_new_conversation(browser) -> None:
    """Press "New conversation" and wait until the history is empty."""
    css(the_app(browser), ".rag-new-conversation")[0].click()
    wait_for(browser, lambda b: not css(the_app(b), ".rag-history-turn"), 10, "the history to clear")


def test_an_unanswerable_question_takes_the_dont_know_path(ran):
    # A new topic: asked as a follow-up, it would be searched for together with the hotel question.
    start_a_new_conversation(ran)
    html, status = ask(ran, "What is the boiling point of tungsten in kelvin?")
    answer = css(the_app(ran), ".rag-answer")[0]
    assert css(answer, ".rag-dont-know"), f"answered instead of saying it does not know: {answer.text}"
    assert not CITATION.search(answer.text)


def test_the_app_fits_the_default_jupyterlab_width(ran):
    app = the_app(ran)
    overflow = ran.execute_script(
        """const app = arguments[0];
           const boxes = [app, app.closest('.jp-OutputArea-output'), app.closest('.jp-Cell'),
                          document.querySelector('.jp-WindowedPanel-outer')];
           return boxes.filter(e => e && e.scrollWidth > e.clientWidth + 1)
                       .map(e => `${e.className}: ${e.scrollWidth} > ${e.clientWidth}`);""",
        app,
    )
    assert not overflow, f"horizontal scrollbar: {overflow}"
    cut_labels = ran.execute_script(
        """const canvas = document.createElement('canvas').getContext('2d');
           const cut = [];
           for (const s of arguments[0].querySelectorAll('select')) {
             canvas.font = getComputedStyle(s).font;
             const text = s.options[s.selectedIndex].text;
             if (canvas.measureText(text).width + 20 > s.clientWidth) cut.push(text);
           }
           for (const l of arguments[0].querySelectorAll('label.widget-label')) {
             if (l.offsetWidth && l.scrollWidth > l.clientWidth + 1) cut.push(l.textContent);
           }
           return cut;""",
        app,
    )
    assert not cut_labels, f"labels cut off: {cut_labels}"


def test_a_follow_up_is_answered_with_the_conversation_and_new_conversation_clears_it(ran):
    app = the_app(ran)
    start_a_new_conversation(ran)
    ask(ran, "What is the standard nightly hotel cap in the 2024 travel policy?")
    html, status = ask(ran, "And in London?")
    turns = css(app, ".rag-history-turn")
    assert len(turns) == 1 and "hotel cap" in turns[0].text, [t.text for t in turns]
    assert "follow-up" in status, status
    answer = css(app, ".rag-answer")[0]
    assert css(answer, ".rag-cite") and not css(answer, ".rag-dont-know"), answer.text
    assert "185" in answer.text, f"the follow-up did not find London's cap: {answer.text}"
    start_a_new_conversation(ran)
