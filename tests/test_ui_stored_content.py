"""``heirloom ui`` and ``eval --html`` over stored content that is legal but awkward: labels with ``$``,
a plugin's malformed confusion matrix, a matrix of 150 labels, a 1,000-generation lineage, names of
100 characters (checker h324). Versions are stored with ``ArtifactStore.put``, what ``train`` calls."""

from __future__ import annotations

import csv
import html
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import heirloom
from heirloom.core.components import State
from tests.helpers import run_heirloom, write

pytest.importorskip("starlette", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")
pytest.importorskip("matplotlib", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")
from tests.test_ui import CHROMIUM, CHROMIUM_ARGS, get, sync_api, ui

MONEY = ["$10-$20", "under $5", "cost $\\foo$ x"]  # two `$` made matplotlib read mathtext; `\foo` failed it
DEPTH = 1000  # the recursive generation() overflowed Python's stack here
LONG_PROJECT, LONG_MODEL = "Long-project-name-" * 5 + "x" * 10, "model_with_a_really_long_name." * 3 + "end"
LONG_LABEL = "L" * 199


def classification(labels: list[str], matrix: list[list[int]] | None = None) -> dict:
    return {
        "accuracy": 1.0,
        "per_class": {label: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1} for label in labels},
        "confusion_matrix": {"labels": labels, "matrix": matrix or np.eye(len(labels), dtype=int).tolist()},
    }


def put(store: heirloom.ArtifactStore, project: str, model: str, metrics: dict, parent=None):
    state = State({"w": np.zeros(2, dtype="float32")}, {"format": "x"})
    return store.put(project, model, state, model_type="fake", parent=parent, metrics=metrics)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("stored")
    store = heirloom.ArtifactStore(root / "store")
    put(store, "money", "m", classification(MONEY))
    put(store, "ragged", "m", classification(["a", "b"], [[1, 0], [1]]))  # a plugin's malformed matrix
    put(store, "short", "m", classification(["a", "b", "c"], [[1, 0], [0, 1]]))  # drawn as valid (h406 F2)
    put(store, "views", "m", classification([f"label {i}" for i in range(60)]))  # ~0.5 s to draw
    put(store, "wide", "m", classification([f"label number {i}" for i in range(150)]))
    parent = put(store, "root", "m", classification(["a", "b"]))
    put(store, LONG_PROJECT, LONG_MODEL, classification(["a", LONG_LABEL]), parent=parent)
    parent = None
    for _ in range(DEPTH):
        parent = put(store, "deep", "d", {"accuracy": 0.5}, parent=parent)
    for n in range(60):  # each retrained from scratch: 60 roots in one generation
        put(store, "daily", "d", {"accuracy": n / 100})
    mixed = put(store, "mix", "own", {"accuracy": 0.5})  # 45 children of other models first, then its own 5
    for n in range(45):
        put(store, "zz", f"kid{n}", {"accuracy": 0.5}, parent=mixed)
    for _ in range(5):
        put(store, "mix", "own", {"accuracy": 0.5}, parent=mixed)
    with ui(root / "store", root / "ui.log") as url:
        yield {"root": root, "store": root / "store", "url": url}
    assert "Traceback" not in (root / "ui.log").read_text()


def test_labels_with_dollar_signs_are_drawn_as_text_and_a_failing_picture_costs_only_the_picture(stored):
    status, body = get(stored["url"] + "/models/money/m/1")
    assert status == 200
    assert 'img class="confusion"' in body, "the `cost $\\foo$ x` label took the picture (and the tables) away"
    for label in MONEY:
        assert f"<td>{html.escape(label)}</td>" in body
    status, body = get(stored["url"] + "/models/ragged/m/1")  # the picture fails; the tables are still shown
    assert status == 200 and "cannot draw the recorded metrics" not in body
    assert 'table class="per-class"' in body and 'table class="metrics"' in body
    said = r'<p class="note not-drawn confusion">Cannot draw the confusion matrix: ValueError: [^<]+</p>'
    assert re.search(said, body)
    status, body = get(stored["url"] + "/models/short/m/1")  # 2 x 2 under 3 labels: no row drawn empty
    assert status == 200 and re.search(said.replace("[^<]+", "its matrix is not 3 x 3[^<(]+"), body), body[-2000:]
    assert "h406" not in body  # a ticket's tag was shown to users (v25 F4)


def test_eval_html_draws_a_label_with_dollar_signs(tmp_path):
    data = tmp_path / "money.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i, label in enumerate(MONEY):
            writer.writerows([f"w{i} v{i} z{j}", label] for j in range(12))
    profile = write(
        tmp_path / "money.toml",
        f'project = "money"\n[resources]\nthreads = 1\n[sources.s]\nuse = "csv"\ntrain = "{data}"\n'
        '[models.m]\nuse = "text-classifier"\ndata = "s"\nbuckets = 4096\nepochs = 3\n',
    )
    env = {"HEIRLOOM_STORE": str(tmp_path / "store")}
    assert run_heirloom("train", str(profile), env=env, timeout=300).returncode == 0
    out = tmp_path / "money.html"
    result = run_heirloom("eval", str(profile), "--html", str(out), env=env, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    page = out.read_text()
    assert 'img class="confusion"' in page and f"<td>{html.escape(MONEY[2])}</td>" in page


def test_a_confusion_matrix_of_over_100_labels_is_not_drawn_and_the_page_says_why(stored):
    status, body = get(stored["url"] + "/models/wide/m/1")
    assert status == 200 and 'img class="confusion"' not in body
    assert "Not drawn: 150 labels are over the 100 a readable picture holds" in body
    assert body.count("<td>label number ") == 150


def test_simultaneous_first_views_of_a_version_draw_its_report_once(stored):
    from heirloom_plugins.dashboard.app import Reports

    store = heirloom.ArtifactStore(stored["store"], create=False)
    artifact = store.resolve("views/m@1")
    reports, start, drawn = Reports(), threading.Barrier(4), []

    def view() -> None:
        start.wait()
        drawn.append(reports(artifact))

    threads = [threading.Thread(target=view) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(drawn) == 4 and 'img class="confusion"' in drawn[0]
    assert len({id(report) for report in drawn}) == 1, "each view drew the report again"


def test_a_lineage_of_1000_generations_shows_its_last_50(stored):
    for path in ("/models/deep/d", f"/models/deep/d/{DEPTH}"):
        status, body = get(stored["url"] + path)
        assert status == 200, (path, body[-500:])
        note = "The graph shows the last 50 generations: the 950 version(s) of the 950 earliest generations are not"
        assert note in body
        assert body.count('<g class="node') == 50 and f'data-ref="deep/d@{DEPTH}"' in body
        drawn = re.findall(r'<g class="node[^"]*" data-ref="deep/d@([0-9]+)"', body)
        assert sorted(map(int, drawn)) == list(range(951, DEPTH + 1))
    assert get(stored["url"] + "/models/deep/d/3")[0] == 200


def test_a_generation_of_many_versions_draws_its_newest_40_and_says_so(stored):
    """h406 F1: 600 versions retrained from scratch drew a column 48,010 px tall above the versions table."""
    status, body = get(stored["url"] + "/models/daily/d")
    assert status == 200, body[-500:]
    drawn = sorted(map(int, re.findall(r'<g class="node[^"]*" data-ref="daily/d@([0-9]+)"', body)))
    assert drawn == list(range(21, 61)), drawn
    said = "It draws the newest 40 versions of each generation, this model's first, and their parents: 20 more are"
    assert said in html.unescape(body)
    assert body.count('href="/models/daily/d/') >= 60  # the versions table lists every one


def test_a_crowded_generation_keeps_the_models_own_versions(stored):
    """v25 F2: by name, the newest 40 of a generation kept 40 older children of other models (zz/...) and dropped
    the model's own 5 newest versions from its own graph."""
    status, body = get(stored["url"] + "/models/mix/own")
    assert status == 200, body[-500:]
    own = sorted(map(int, re.findall(r'<g class="node[^"]*" data-ref="mix/own@([0-9]+)"', body)))
    assert own == [1, 2, 3, 4, 5, 6], own
    assert len(re.findall(r'<g class="node[^"]*" data-ref="zz/', body)) == 35  # 40 in the generation, its own first


def test_a_long_ref_is_cut_in_its_lineage_node_and_whole_in_its_tooltip(stored):
    ref = f"{LONG_PROJECT}/{LONG_MODEL}@1"
    status, body = get(stored["url"] + "/models/root/m")
    assert status == 200
    node = body[body.index(f'data-ref="{ref}"') :]
    node = node[: node.index("</g>")]
    assert f"<title>{ref}</title>" in node and f">{ref[:29]}…</text>" in node
    assert f">{ref}<" not in node.split("</title>")[1]


def test_post_is_a_405_with_allow_saying_the_dashboard_is_read_only(stored):
    request = urllib.request.Request(stored["url"] + "/models/money/m/1", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405 and sorted(refused.value.headers["Allow"].split(", ")) == ["GET", "HEAD"]
    assert "the dashboard is read-only: it answers GET and HEAD, not POST" in refused.value.read().decode()


def test_long_names_and_labels_keep_the_page_within_the_window(stored):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{stored['url']}/models/{LONG_PROJECT}/{LONG_MODEL}/1")
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280, "the <h1> is wider than the window"
            support = page.locator("table.per-class tbody tr").last.locator("td").last
            box = support.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 1280, "the 199-character label pushed the numbers out"
        finally:
            browser.close()
