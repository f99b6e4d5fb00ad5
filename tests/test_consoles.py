"""The consoles ``heirloom gateway`` serves, in headless Chromium (Debian's, driven by
Playwright, as tests/test_ui.py does): the medical console on a trained ``medical-small``
and the recommend console on a trained recommender. A passing medical test leaves its page
in SCREENSHOT for the record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.daemons import Daemon
from tests.helpers import REPO, run_heirloom, write
from tests.test_gateway import Gateway
from tests.test_recommend import SERVED_PROFILE
from tests.test_ui import browser, page  # noqa: F401 - fixtures: Debian's Chromium, a page per test

pytest.importorskip("starlette", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")

SCREENSHOT = Path(os.environ.get("HEIRLOOM_CONSOLE_SCREENSHOT", "/tmp/heirloom-medical-console.png"))
#: A fit small enough for tests (as tests/test_medical.py): two penalties, three folds.
QUICK = [
    f"--set=models.{model}.{key}={value}"
    for model in ("diagnosis", "treatment")
    for key, value in (("l2", json.dumps([0.3, 3.0])), ("folds", "3"))
]


def _served(tmp: Path, env: dict[str, str], profile: str) -> tuple[Daemon, Gateway]:
    daemon = Daemon(tmp, profile=profile, env=env)
    daemon.wait_ready(timeout=120)
    return daemon, Gateway(tmp, daemon.address, env=env)


@pytest.fixture(scope="module")
def medical(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("medical-console")
    env = {"HEIRLOOM_HOME": str(tmp / "home"), "HEIRLOOM_DATA": str(data_dir)}
    trained = run_heirloom("train", "medical-small", *QUICK, env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr
    daemon, gateway = _served(tmp, env, (REPO / "profiles" / "medical-small.toml").read_text())
    yield daemon, gateway
    assert gateway.stop() == 0
    assert daemon.terminate() == 0, daemon.log()


@pytest.fixture(scope="module")
def recommend(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("recommend-console")
    env = {"HEIRLOOM_HOME": str(tmp / "home"), "HEIRLOOM_DATA": str(data_dir)}
    trained = run_heirloom("train", str(write(tmp / "recs.toml", SERVED_PROFILE)), env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr
    daemon, gateway = _served(tmp, env, SERVED_PROFILE)
    yield daemon, gateway
    assert gateway.stop() == 0
    assert daemon.terminate() == 0, daemon.log()


def test_the_medical_console_finds_a_patient_and_shows_diagnoses_and_treatments(medical, page):  # noqa: F811
    daemon, gateway = medical
    page.goto(gateway.url + "/console")
    page.click("a[href='/console/record']")
    page.fill("input[name='q']", "sinusitis")
    page.click("form.find button")
    hits = page.locator("table.patients a.patient").all_inner_texts()
    assert hits, "the search finds patients with sinusitis"
    patient = hits[0]
    page.click(f"table.patients a.patient >> text={patient}")
    assert patient in page.inner_text("p.facts")
    problems = page.locator("table.problems tbody tr td:first-child").all_inner_texts()
    assert any("sinusitis" in problem.lower() for problem in problems)

    with daemon.client(timeout=30) as client:
        summary = client.call("record.summary", {"patient": patient})
        encounter = summary["encounters"][0]["id"]
        diagnosis = client.call("diagnosis.predict", {"patient": patient, "encounter": encounter})
        treatment = client.call("treatment.recommend", {"patient": patient, "encounter": encounter})
    for route, answer in (("diagnosis.predict", diagnosis), ("treatment.recommend", treatment)):
        section = page.locator(f"section.ranked[data-route='{route}']")
        names = section.locator("tbody tr td:first-child").all_inner_texts()
        assert names == [item["display"] for item in answer["codes"][:10]]
        probabilities = [float(p) for p in section.locator("td.probability").all_inner_texts()]
        assert probabilities == pytest.approx([item["probability"] for item in answer["codes"][:10]], abs=1e-3)
        assert answer["version"] in section.inner_text()

    older = summary["encounters"][-1]["id"]
    page.select_option("form.encounter select", older)
    page.wait_for_url(f"**encounter={older}*")
    assert page.locator("section.ranked[data-route='diagnosis.predict'] tbody tr").count() > 0
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_the_medical_console_names_an_unknown_patient(medical, page):  # noqa: F811
    _, gateway = medical
    page.goto(gateway.url + "/console/record?patient=no-such-patient")
    assert "NOT_FOUND" in page.inner_text("p.error") and "no-such-patient" in page.inner_text("p.error")


def test_the_recommend_console_shows_a_users_history_and_recommendations(recommend, page):  # noqa: F811
    daemon, gateway = recommend
    page.goto(gateway.url + "/console/recs")
    page.fill("input[name='user']", "1")
    page.fill("input[name='k']", "5")
    page.click("form button")
    recommended = page.locator("table.recommendations tbody tr").evaluate_all("rows => rows.map(r => r.dataset.item)")
    with daemon.client(timeout=30) as client:
        expected = client.call("recs.recommend", {"user": "1", "k": 5})
        history = client.call("recs.history", {"user": "1", "limit": 20})
    assert recommended == [item["item"] for item in expected["items"]]
    shown = page.locator("table.history tbody tr").evaluate_all("rows => rows.map(r => r.dataset.item)")
    assert shown == [item["item"] for item in history["items"]] and not set(shown) & set(recommended)
    assert f"of {history['count']} items" in page.inner_text("main")
