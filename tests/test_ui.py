"""``heirloom ui`` in headless Chromium, and ``heirloom eval --html``, on a three-generation model.

news-core/sentiment@1 (PhraseBank, all annotators agree) -> news/sentiment@1 (75% agree,
inherits it) -> news-desk/sentiment@1 and @2 (66% agree, inherit news@1; @2 is
production). Playwright drives Debian's Chromium (no browser download); a failing test
leaves a screenshot next to its temp files, a passing one leaves the version page in
SCREENSHOT for the record.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import attrs
import pytest

import heirloom
from heirloom.store.training import model_specs, train
from tests.conftest import PHASE_REPORTS
from tests.daemons import Daemon
from tests.helpers import HEIRLOOM, REPO, free_port, free_tcp_address, run_heirloom, write

pytest.importorskip("starlette", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")
pytest.importorskip("matplotlib", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the 'dev' extra)")

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
SCREENSHOT = Path(os.environ.get("HEIRLOOM_UI_SCREENSHOT", "/tmp/heirloom-ui-lineage.png"))
SMALL = """
[models.sentiment]
use = "text-classifier"
data = "news"
buckets = 16384
char_ngrams = [0, 0]
epochs = 3
validation_fraction = 0.0
refit = false
"""
GENERATIONS = {
    "news-core": ('agreement = "all"', None),
    "news": ('agreement = "75"', "news-core/sentiment@1"),
    "news-desk": ('agreement = "66"', "news/sentiment@1"),
}


@pytest.fixture(scope="module")
def lineage(tmp_path_factory, data_dir):
    """Three generations trained into one store; news-desk twice, @2 promoted to production."""
    root = tmp_path_factory.mktemp("generations")
    store_path = root / "store"
    kernel = heirloom.Kernel()
    profiles = {}
    for project, (agreement, inherit) in GENERATIONS.items():
        text = (
            f'project = "{project}"\n[store]\npath = "{store_path}"\n'
            f'[sources.news]\nuse = "phrasebank"\npath = "{data_dir}/financial-phrasebank"\n{agreement}\n{SMALL}'
        )
        if inherit:
            text += f'inherit = "{inherit}"\n'
        profiles[project] = write(root / f"{project}.toml", text)
        for seed in range(2 if project == "news-desk" else 1):  # other splits: identical training would reuse @1
            resolved = kernel.resolve(str(profiles[project]), [f"sources.news.seed={seed}"])
            train(kernel, resolved, model_specs(resolved, ())[0], kernel.store(resolved), heirloom.NullProgress())
    store = heirloom.ArtifactStore(store_path)
    store.promote("news-desk/sentiment@2", "production")
    served = write(
        root / "served.toml",
        'extends = ["news-desk.toml"]\nproject = "news-desk"\n[models.sentiment]\nserve = "production"\n'
        '[apis.sentiment]\nuse = "classify"\nmodel = "sentiment"\n',
    )
    return {"root": root, "store": store_path, "profiles": profiles, "served": served}


@pytest.fixture(scope="module")
def daemon(lineage):
    daemon = Daemon(lineage["root"], profile=lineage["served"].read_text())
    daemon.wait_ready(timeout=120)
    yield daemon
    assert daemon.terminate() == 0, daemon.log()


@contextlib.contextmanager
def ui(store: Path, log: Path, *options: str):
    """``heirloom ui --store STORE OPTIONS`` as a subprocess, its output in ``log``; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [*HEIRLOOM, "ui", "--store", str(store), "--port", str(port), *options],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=2).close()
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # bound, still starting: under load
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"heirloom ui did not start:\n{log.read_text()}")
            time.sleep(0.2)
    yield url
    process.terminate()
    assert process.wait(20) == 0


@pytest.fixture(scope="module")
def dashboard(lineage, daemon):
    """``heirloom ui`` connected to the daemon; yields its base URL."""
    with ui(lineage["store"], lineage["root"] / "ui.log", "--connect", daemon.address) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path, request):
    """A fresh page; if the test fails, a full-page screenshot is saved and its path printed."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    yield page
    report = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    if report is not None and report.failed:
        shot = tmp_path / f"{request.node.name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failure: {shot}")
    page.close()


def svg_graph(page) -> tuple[list[str], list[tuple[str, str]]]:
    page.locator("svg.lineage g.node").first.wait_for()  # a click's page may still be loading (a loaded machine)
    nodes = page.locator("svg.lineage g.node").evaluate_all("gs => gs.map(g => g.dataset.ref)")
    edges = page.locator("svg.lineage path.edge").evaluate_all("ps => ps.map(p => [p.dataset.parent, p.dataset.child])")
    return sorted(nodes), sorted(map(tuple, edges))


def image_loaded(page, selector: str) -> int:
    return page.locator(selector).evaluate("img => img.complete ? img.naturalWidth : 0")


def test_the_lineage_of_a_three_generation_model_renders_with_its_report(dashboard, page):
    page.goto(dashboard + "/")
    models = page.locator("table.models tbody tr").evaluate_all("rows => rows.map(r => r.dataset.model)")
    assert sorted(models) == ["news-core/sentiment", "news-desk/sentiment", "news/sentiment"]
    assert "production → @2" in page.locator("tr[data-model='news-desk/sentiment']").inner_text()

    page.click("text=news-desk/sentiment")
    nodes, edges = svg_graph(page)
    assert nodes == ["news-core/sentiment@1", "news-desk/sentiment@1", "news-desk/sentiment@2", "news/sentiment@1"]
    assert edges == [
        ("news-core/sentiment@1", "news/sentiment@1"),
        ("news/sentiment@1", "news-desk/sentiment@1"),
        ("news/sentiment@1", "news-desk/sentiment@2"),
    ]
    assert page.locator("table.versions tbody tr").count() == 2
    words = page.locator("details.lineage-text li").all_text_contents()  # the arrows in words (h416 F2)
    assert (
        "news/sentiment@1: inherits from news-core/sentiment@1; inherited by news-desk/sentiment@1, "
        "news-desk/sentiment@2" in words
    ), words
    assert words[0].startswith("news-core/sentiment@1:"), words  # by generation, as drawn (v28 F4)

    page.locator("svg.lineage g.node[data-ref='news-desk/sentiment@2'] a").click()
    page.wait_for_url("**/models/news-desk/sentiment/2")
    assert page.locator("h1").inner_text() == "news-desk/sentiment@2"
    assert "@production" in page.inner_text("main")
    assert "3 generations: news-desk/sentiment@2 ← news/sentiment@1 ← news-core/sentiment@1" in page.inner_text("main")
    nodes, edges = svg_graph(page)
    assert nodes == ["news-core/sentiment@1", "news-desk/sentiment@2", "news/sentiment@1"]
    assert edges == [("news-core/sentiment@1", "news/sentiment@1"), ("news/sentiment@1", "news-desk/sentiment@2")]
    assert page.locator("svg.lineage g.node.focus").get_attribute("data-ref") == "news-desk/sentiment@2"
    box = page.locator("svg.lineage").bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 50, "the graph is drawn, not empty"

    rows = page.locator("table.per-class tbody tr td:first-child").all_inner_texts()
    assert rows == ["negative", "neutral", "positive"]
    accuracy = page.locator("table.metrics tr", has_text="accuracy").first.inner_text()
    assert re.search(r"accuracy\s+0\.[5-9]\d{3}", accuracy), accuracy
    assert image_loaded(page, "img.confusion") > 200, "the confusion matrix picture decoded"
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_on_a_phone_no_page_is_wider_than_the_screen(dashboard, browser, tmp_path):
    """390 px wide: wide tables scroll inside their own box and the header wraps, so the page itself
    never scrolls sideways (the index was 867 px wide)."""
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        for path in ("/", "/models/news-desk/sentiment", "/models/news-desk/sentiment/2", "/live"):
            phone.goto(dashboard + path)
            width = phone.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                phone.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
            assert width <= 390, f"{path} is {width} px wide on a 390 px screen (screenshot in {tmp_path})"
    finally:
        phone.close()


def test_pages_load_without_a_console_error(dashboard, page):
    """No request of a page fails: a browser asked for /favicon.ico, a 404 on every page."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    for path in ("/", "/models/news-desk/sentiment/2", "/live"):
        page.goto(dashboard + path)
    page.wait_for_timeout(500)  # the icon is asked for after the page loads
    assert errors == []


def test_a_version_report_is_drawn_once_and_kept_for_the_versions_viewed_last(lineage):
    """Versions never change, so a version page draws its pictures at the first view only (it took
    0.33 s a view, six at once 2.8 to 3.9 s); the kept reports are bounded, the oldest view dropped."""
    from heirloom_plugins.dashboard.app import REPORTS_KEPT, Reports

    store = heirloom.ArtifactStore(lineage["store"], create=False)
    first, second = store.resolve("news-desk/sentiment@1"), store.resolve("news-desk/sentiment@2")
    reports = Reports()
    drawn = reports(first)
    assert 'img class="confusion"' in drawn
    assert reports(first) is drawn  # kept, not drawn again
    assert reports(second) is not drawn
    for _ in range(REPORTS_KEPT):  # views of other versions push the first one out
        reports(attrs.evolve(second, digest=os.urandom(8).hex()))
    assert reports(first) is not drawn and reports(first) == drawn


def test_live_route_stats_come_from_the_connected_daemon(dashboard, daemon, page):
    with daemon.client(timeout=10) as client:
        for text in ("Profit rose sharply", "The company cut its outlook", "The meeting is on Monday"):
            assert client.call("sentiment.predict", {"text": text})["version"] == "news-desk/sentiment@2"
    page.goto(dashboard + "/live")
    assert page.locator("strong.ready").inner_text() == "True"
    row = page.locator("tr[data-route='sentiment.predict']")
    assert int(row.locator("td.count").inner_text()) >= 3
    assert "news-desk/sentiment@2" in page.locator("table.served").inner_text()
    assert page.locator("meta[http-equiv='refresh']").get_attribute("content") == "5"
    page.keyboard.press("Tab")  # h416 F4: the pause link was the 4th Tab stop, behind a reload every 5 s
    assert page.evaluate("document.activeElement.className") == "pause"
    page.click("a.pause")  # a reader of the table can stop the reloads (checker 267: WCAG 2.2.1), and resume them
    assert page.url.endswith("/live?refresh=0") and page.locator("meta[http-equiv='refresh']").count() == 0
    assert int(page.locator("tr[data-route='sentiment.predict'] td.count").inner_text()) >= 3
    page.click("a.resume")
    assert page.locator("meta[http-equiv='refresh']").get_attribute("content") == "5"


def test_unknown_refs_are_404_pages_and_nothing_can_be_written(dashboard, page):
    response = page.goto(dashboard + "/models/news-desk/sentiment/9")
    assert response is not None and response.status == 404
    assert "news-desk/sentiment" in page.inner_text("p.error")
    request = urllib.request.Request(dashboard + "/", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405


def test_a_page_rebinding_its_name_to_loopback_cannot_read_the_dashboard(dashboard):
    """DNS rebinding: the page is same-origin to the browser, but its requests carry its own
    name as Host; the dashboard (on loopback) answers loopback names only."""
    port = dashboard.rsplit(":", 1)[1]
    rebound = urllib.request.Request(dashboard + "/", headers={"Host": f"rebound.example:{port}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebound, timeout=5)
    assert refused.value.code == 400 and b"'rebound.example:" in refused.value.read()
    for name in ("localhost", "[::1]", "127.0.0.2", "LocalHost."):  # as the gateway judges Host (heirloom.options)
        own = urllib.request.Request(dashboard + "/", headers={"Host": f"{name}:{port}"})
        with urllib.request.urlopen(own, timeout=5) as response:
            assert response.status == 200


def test_no_other_site_may_frame_the_dashboard_and_no_reply_is_type_sniffed(dashboard):
    """A page on another site loaded the dashboard in an iframe (clickjacking), and its replies said no
    ``nosniff``, where the gateway's pages send both (checker h360 F1); refusals (400, 404, 405) too."""
    port = dashboard.rsplit(":", 1)[1]
    asked = [
        urllib.request.Request(dashboard + "/"),
        urllib.request.Request(dashboard + "/models/news-desk/sentiment/9"),
        urllib.request.Request(dashboard + "/", method="POST", data=b""),
        urllib.request.Request(dashboard + "/", headers={"Host": f"rebound.example:{port}"}),
    ]
    for request in asked:
        try:
            headers = urllib.request.urlopen(request, timeout=5).headers
        except urllib.error.HTTPError as refused:
            headers = refused.headers
        assert headers["X-Frame-Options"] == "DENY", request.full_url
        assert headers["Content-Security-Policy"] == "frame-ancestors 'none'"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"  # as the gateway's (checker h460 F1)


def test_eval_html_is_one_self_contained_file(lineage, tmp_path, page):
    out = tmp_path / "report.html"
    env = {"HEIRLOOM_STORE": str(lineage["store"])}
    result = run_heirloom("eval", str(lineage["served"]), "--html", str(out), env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "news-desk/sentiment@2" in html
    assert not re.search(r"""(src|href)=["']?(https?:|//|/[a-z])""", html), "nothing is loaded from elsewhere"
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 1 and base64.b64decode(images[0]).startswith(b"\x89PNG")
    page.goto(out.as_uri())
    assert page.locator("table.per-class tbody tr").count() == 3
    assert image_loaded(page, "img.confusion") > 200
    os.mkfifo(tmp_path / "pipe")  # an atomic rename would have replaced it with a file
    for target, said in ((tmp_path / "pipe", "not a regular file"), (tmp_path / "no" / "r.html", "does not exist")):
        refused = run_heirloom("eval", str(lineage["served"]), "--html", str(target), env=env, timeout=300)
        assert refused.returncode == 2 and "Invalid value for '--html'" in refused.stderr and said in refused.stderr
    assert not (tmp_path / "pipe").is_file() and not (tmp_path / "no").exists()


def test_eval_html_names_its_file_when_the_name_is_long_or_the_folder_is_a_file(lineage, tmp_path):
    """A name that fits but whose temporary twin would not, one too long to write, a file where
    its folder should be: one line naming --html and the file, never a traceback nor the model."""
    env = {"HEIRLOOM_STORE": str(lineage["store"])}
    out = tmp_path / "out"  # tmp_path holds the commands' HEIRLOOM_HOME too
    out.mkdir()
    (out / "afile").write_text("")
    long_name = out / ("r" * 245 + ".html")  # 250 bytes: its temporary file's name was over 255
    result = run_heirloom("eval", str(lineage["served"]), "--html", str(long_name), env=env, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert long_name.read_text().startswith("<!")
    too_long, in_a_file = out / ("r" * 251 + ".html"), out / "afile" / "r.html"
    for target, code, said in (  # refused at parse time, before any work (a name too long: checker 307 F6)
        (too_long, 2, "Invalid value for '--html': File name too long: rrrrrrrr"),
        (in_a_file, 2, f"Invalid value for '--html': {in_a_file}: the folder {out / 'afile'} is a file, not a folder"),
    ):
        refused = run_heirloom("eval", str(lineage["served"]), "--html", str(target), env=env, timeout=300)
        assert refused.returncode == code, refused.stderr
        assert said in refused.stderr and "Traceback" not in refused.stderr and "evaluating" not in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(["afile", long_name.name])  # no temporary file left


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_the_ui_writes_nothing_and_a_damaged_index_is_a_503_saying_so(lineage, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(lineage["store"], store)
    before = (listing(store), store.stat().st_mtime_ns)
    pages = ["/", "/models/news-desk/sentiment", "/models/news-desk/sentiment/2"]
    with ui(store, tmp_path / "ui.log") as url:
        assert [get(url + page)[0] for page in pages] == [200, 200, 200]
        assert get(url + "/models/news-desk/sentiment/9")[0] == 404  # names nothing stored
        assert (listing(store), store.stat().st_mtime_ns) == before, "reading left the store's folder as it was"
        index = store / "index.sqlite"
        index.write_bytes(index.read_bytes()[:5000])
        for page in pages:
            status, body = get(url + page)
            assert status == 503, (page, status)
            assert f"the store index {index} could not be read" in body and "restore it from a backup" in body
    assert sorted(p.name for p in store.iterdir()) == ["blobs", "index.sqlite"]
    assert "Traceback" not in (tmp_path / "ui.log").read_text()


def test_live_with_the_daemon_down_says_so_in_whole_seconds_without_advice_that_does_not_apply(tmp_path):
    heirloom.ArtifactStore(tmp_path / "store")
    address = free_tcp_address()  # nothing listens there
    with ui(tmp_path / "store", tmp_path / "ui.log", "--connect", address) as url:
        status, body = get(url + "/live")
    assert status == 200
    assert f"Cannot read <code>_stats</code> from {address}: no answer within 2 s: is the daemon running" in body
    assert "raise the timeout" not in body and "1.99" not in body


def test_a_host_that_names_no_address_of_this_machine_is_a_usage_error(tmp_path):
    heirloom.ArtifactStore(tmp_path / "store")
    result = run_heirloom("ui", "--store", str(tmp_path / "store"), "--host", "999.1.1.1")
    assert result.returncode == 2, result.stderr
    assert "cannot listen on 999.1.1.1:8765: " in result.stderr and "--host names no address" in result.stderr


def test_ui_without_the_store_says_so(tmp_path):
    """A --store naming no store is a usage error (exit 2) as for ``models list`` (it was 1)."""
    result = run_heirloom("ui", "--store", str(tmp_path / "nothing-here"))
    assert result.returncode == 2
    assert f"no artifact store at {tmp_path / 'nothing-here'}" in result.stderr
