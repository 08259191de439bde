"""The built book, checked as a reader sees it: every page opened in headless Chromium.

For each HTML page of the built book, served from 127.0.0.1, this asserts:
- every image loaded (naturalWidth > 0) and no request the page made got a 4xx/5xx answer;
- nothing was requested from another host (the book must read offline: no CDN for math, fonts or search);
- no execution error reached the page (a traceback in a cell output);
- where the page has math, MathJax rendered it (one `mjx-container` per math element, no `mjx-merror`);
- no MyST markup reached the reader unrendered: no role (`{glue}`, `{cite:p}`, `{doc}`, ...), no code fence and no
  backticked `code` in the page's visible text, outside code listings (code may quote markup; prose never should);
- every code block fits the code column at the 1280 px window: no `pre` (cell inputs and outputs,
  `literalinclude` listings) and no table scrolls sideways. A failure names the page and the first line that
  does not fit (book/_static/custom.css sizes the column; the package's code is written to 120 columns).

It needs a built book: `make book-ci` builds one and then runs this file with MINICLIP_BOOK_HTML pointing at
it (`make book` output at _build/html is used too, when present). Without any build the test skips, because
unit tests run before the book is built; with MINICLIP_BOOK_HTML set, a missing build is a failure.
Screenshots of four chapters are written to _build/screenshots/ for a human to look at.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = [ROOT / "_build" / "ci" / "_build" / "html", ROOT / "_build" / "html"]
SCREENSHOT_PAGES = ("notebooks/02_introduction.html", "notebooks/04_architecture.html", "notebooks/06_training.html",
                    "notebooks/07_zeroshot.html", "notebooks/12_attention.html")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1600")


def _book_html() -> Path:
    explicit = os.environ.get("MINICLIP_BOOK_HTML")
    if explicit:
        path = Path(explicit)
        assert (path / "index.html").exists(), f"MINICLIP_BOOK_HTML={explicit} holds no built book (index.html)"
        return path
    for path in CANDIDATES:
        if (path / "index.html").exists():
            return path
    pytest.skip("no built book found (run `make book-ci`, which builds it and then runs this test)")


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    ci_script = (ROOT / ".ci" / "run").read_text()
    if "apt-get install" in ci_script and "chromium-driver" in ci_script:
        pytest.skip("chromium/chromedriver not installed here; .ci/run installs them, so CI runs this test "
                    "(locally: apt-get install -y chromium chromium-driver)")
    pytest.fail("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the book and remembers every request that was answered with an error status."""

    errors: list[tuple[str, int]]

    def log_message(self, *args):  # keep the test output quiet
        pass

    def send_response(self, code, message=None):
        if code >= 400:
            self.errors.append((self.path, code))
        super().send_response(code, message)


@pytest.fixture(scope="module")
def server():
    html = _book_html()
    errors: list[tuple[str, int]] = []
    handler = functools.partial(type("Handler", (_RecordingHandler,), {"errors": errors}), directory=str(html))
    # A deeper accept queue than socketserver's 5: Chromium opens many connections at once for a page's assets.
    server_class = type("Server", (http.server.ThreadingHTTPServer,), {"request_queue_size": 128})
    httpd = server_class(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield html, f"http://127.0.0.1:{httpd.server_address[1]}", errors
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile_dir = tempfile.mkdtemp(prefix="miniclip-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(90)
    yield driver
    driver.quit()
    shutil.rmtree(profile_dir, ignore_errors=True)


# Waits for the page's load event, for MathJax (if the page loads it) and for every image (lazy ones made eager),
# then reports.
INSPECT_PAGE = r"""
const done = arguments[arguments.length - 1];
// chromedriver can hand the script a document that is still being parsed (the likely reason CI once measured
// two whole pages at under 50 visible characters), so nothing is measured before the load event has fired.
function whenLoaded(then) {
  if (document.readyState === "complete") return then();
  window.addEventListener("load", () => then(), {once: true});
}
whenLoaded(() => {
const hasMath = document.querySelector(".math") !== null;
// MathJax's script is deferred and sets up asynchronously: on pages with math, wait until its start-up
// promise exists and resolves (after the first typesetting), for at most 40 s; pages without math don't wait.
const mathjax = new Promise(resolve => {
  if (!hasMath) return resolve();
  const start = Date.now();
  setTimeout(resolve, 40000);
  (function poll() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(resolve, resolve);
    } else if (Date.now() - start < 40000) {
      setTimeout(poll, 100);
    }
  })();
});
const images = Array.from(document.images);
const loaded = Promise.all(images.map(img => {
  img.loading = "eager";
  if (img.complete) return Promise.resolve();
  return new Promise(resolve => { img.onload = img.onerror = resolve; setTimeout(resolve, 10000); });
}));
// MyST markup that should have been rendered: a role, or a code fence, in what the reader sees. Listings (pre)
// are left out: code may quote markup in its docstrings and strings.
function unrendered() {
  let text = document.body.innerText;
  for (const pre of document.querySelectorAll("pre")) text = text.split(pre.innerText).join("\n");
  const roles = ["glue", "glue:text", "glue:figure", "glue:md", "glue:math", "cite", "cite:p", "cite:t",
                 "cite:ps", "cite:ts", "ref", "doc", "numref", "eq", "math", "term", "download", "abbr"];
  // ... or Markdown code (`name`) pasted as plain text: rendered code shows no backticks.
  const pattern = new RegExp("\\{(" + roles.join("|") + ")\\}|```|`[^`\\n]+`", "g");
  const found = [];
  for (const m of text.matchAll(pattern)) {
    found.push(text.slice(Math.max(0, m.index - 40), m.index + 60).replace(/\s+/g, " "));
    if (found.length >= 5) break;
  }
  return found;
}
// Code blocks and tables wider than their column: each with the first line (or row) that does not fit.
function overflowing() {
  const canvas = document.createElement("canvas").getContext("2d");
  const found = [];
  for (const el of document.querySelectorAll(".bd-article pre, .bd-article .pst-scrollable-table-container")) {
    if (el.clientWidth === 0 || el.scrollWidth <= el.clientWidth + 1) continue;
    const style = getComputedStyle(el);
    let line = "";
    if (el.tagName === "PRE") {
      canvas.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      line = el.innerText.split("\n").find(l => canvas.measureText(l).width > room) || "";
    } else {
      const row = Array.from(el.querySelectorAll("tr")).find(r => r.scrollWidth > el.clientWidth) ||
                  el.querySelector("tr");
      line = row ? row.innerText.replace(/\s+/g, " ") : "";
    }
    found.push({kind: el.tagName === "PRE" ? "code block" : "table", scrollWidth: el.scrollWidth,
                clientWidth: el.clientWidth, fontSize: style.fontSize, line: line.slice(0, 140)});
  }
  return found;
}
Promise.all([mathjax, loaded, document.fonts.ready]).then(() => done({
  brokenImages: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src")),
  mathElements: document.querySelectorAll(".math").length,
  mathRendered: document.querySelectorAll("mjx-container").length,
  mathErrors: document.querySelectorAll("mjx-merror").length,
  mathjaxLoaded: !!(window.MathJax && MathJax.startup),
  tracebacks: document.querySelectorAll(".output.traceback, .output.error").length
              + (document.body.innerText.includes("Traceback (most recent call last)") ? 1 : 0),
  unrendered: unrendered(),
  overflowing: overflowing(),
  viewportWidth: window.innerWidth,
  bodyText: document.body.innerText.length,
  // What was actually on screen, so that a failure report says which document the browser measured.
  href: location.href, readyState: document.readyState, contentType: document.contentType,
  domText: document.body.textContent.length, textHead: document.body.innerText.slice(0, 160),
}), err => done({scriptError: String(err)}));
});
"""


def _pages(html: Path) -> list[str]:
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html") if "_static" not in p.parts)


def _requests(driver) -> tuple[list[str], list[tuple[str, int | str]]]:
    """URLs this page requested, and the requests that failed, from Chromium's performance log.

    A failure is a response with an error status or a request that got no response at all (connection
    refused or reset: Chromium logs those as `loadingFailed` with a net error, never as a response)."""
    urls, failures, url_of = [], [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls.append(params["request"]["url"])
            url_of[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failures.append((params["response"]["url"], params["response"]["status"]))
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            failures.append((url_of.get(params["requestId"], "?"), params.get("errorText", "failed")))
    return urls, failures


def _article_text_length(path: Path) -> int:
    """Characters of text inside the page's <article> (the chapter itself, without navigation), from the file."""
    import re

    source = path.read_text(errors="replace")
    start = source.find("<article")
    end = source.rfind("</article>")
    if start < 0 or end < 0:
        return 0
    text = re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", source[start:end], flags=re.S)
    return len(" ".join(text.split()))


def test_every_page_renders_completely_and_offline(server, browser):
    from selenium.common.exceptions import WebDriverException

    html, base, server_errors = server
    pages = _pages(html)
    assert "intro.html" in " ".join(pages) or "index.html" in pages
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    problems, pages_with_math = [], 0
    for page in pages:
        report = {"scriptError": "the page check did not return within 90 s, twice"}
        # On a busy 2-core machine a page can stall, or be measured before it is there, once; the second
        # attempt must succeed. (A real defect in the built page fails both attempts.)
        for _ in range(2):
            server_errors.clear()
            browser.get_log("performance")  # drop what earlier pages (or a failed attempt) left
            try:
                browser.get(f"{base}/{page}")
                report = browser.execute_async_script(INSPECT_PAGE)
            except WebDriverException as error:  # a stall, or the document replaced under the script
                report = {"scriptError": f"{type(error).__name__}: {error.msg}"}
                continue
            if "scriptError" not in report and report["bodyText"] >= 50 and report["href"] == f"{base}/{page}":
                break
            time.sleep(2)
        urls, failures = _requests(browser)
        # The browser's own chrome:// pages are not the book's; any other scheme would reach another host.
        foreign = [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:", "//")) and not u.startswith(base)]
        # Browsers ask for /favicon.ico on their own when a page declares no icon; that is not a page resource.
        failures = [(u, code) for u, code in failures if not u.endswith("/favicon.ico")]
        server_errors[:] = [(u, code) for u, code in server_errors if u != "/favicon.ico"]
        if "scriptError" in report:
            problems.append(f"{page}: page check failed: {report['scriptError']}")
            continue
        if report["brokenImages"]:
            problems.append(f"{page}: images that did not load: {report['brokenImages']}")
        if failures or server_errors:
            problems.append(f"{page}: error responses: {failures or server_errors}")
        if foreign:
            problems.append(f"{page}: requests to other hosts (the book must work offline): {foreign[:5]}")
        if report["tracebacks"]:
            problems.append(f"{page}: an execution error is shown on the page")
        for context in report["unrendered"]:
            problems.append(f"{page}: unrendered MyST markup in the visible text: ...{context}...")
        for block in report["overflowing"][:3]:
            problems.append(f"{page}: a {block['kind']} scrolls sideways at a {report['viewportWidth']} px window "
                            f"({block['scrollWidth']} px of content in {block['clientWidth']} px, code at "
                            f"{block['fontSize']}); first line that does not fit: {block['line']!r}")
        if len(report["overflowing"]) > 3:
            problems.append(f"{page}: ... and {len(report['overflowing']) - 3} more blocks that scroll sideways")
        if report["mathElements"]:
            pages_with_math += 1
            if not report["mathjaxLoaded"]:
                problems.append(f"{page}: has {report['mathElements']} math elements but MathJax did not load")
            elif report["mathRendered"] < report["mathElements"] or report["mathErrors"]:
                problems.append(f"{page}: {report['mathRendered']} of {report['mathElements']} math elements "
                                f"rendered, {report['mathErrors']} MathJax errors")
        if report["bodyText"] < 50:
            problems.append(f"{page}: the page is (nearly) empty: the browser showed {report['href']} "
                            f"({report['contentType']}, {report['readyState']}), {report['bodyText']} visible and "
                            f"{report['domText']} DOM characters, starting {report['textHead']!r}; the built file "
                            f"has {(html / page).stat().st_size:,} bytes and {_article_text_length(html / page):,} "
                            f"characters of article text")
        if page in SCREENSHOT_PAGES:  # the whole page, for a person to look at
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, min(height, 12000))
            browser.save_screenshot(str(shots / (Path(page).stem + ".png")))
            browser.set_window_size(1280, 1600)
    assert not problems, "\n".join(problems)
    assert pages_with_math >= 2, "the chapters with equations (1 and 3 at least) show no math elements at all"


def test_built_pages_reference_no_external_scripts_or_styles(server):
    """A static check beside the browser's: no <script src> or <link href> points off the site."""
    import re

    html, _, _ = server
    pattern = re.compile(r'<(?:script|link)[^>]+(?:src|href)="(https?:)?//', re.IGNORECASE)
    offenders = [str(p.relative_to(html)) for p in html.rglob("*.html") if pattern.search(p.read_text())]
    assert not offenders, f"pages loading scripts or styles from other hosts: {offenders}"


def test_built_pages_hold_their_text(server):
    """A static check beside the browser's: every page's <article> holds real text in the built file itself."""
    html, _, _ = server
    thin = {str(p.relative_to(html)): n for p in html.rglob("*.html") if "_static" not in p.parts
            and p.name not in ("search.html", "genindex.html") and 'http-equiv="refresh"' not in p.read_text().lower()
            and (n := _article_text_length(p)) < 200}
    assert not thin, f"pages whose article has under 200 characters of text: {thin}"
