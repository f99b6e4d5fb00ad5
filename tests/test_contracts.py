"""The built-in plugins pass the contract checks plugin authors run (heirloom.testing)."""

from __future__ import annotations

import json

import pytest

from heirloom.testing import check_api, check_model, check_source
from heirloom_plugins.echo import EchoApi
from heirloom_plugins.fhir.source import FhirSource
from heirloom_plugins.text import (
    ClassifyApi,
    CsvSource,
    FeedbackSource,
    JsonlSource,
    LabelMonitorApi,
    PhraseBankSource,
    TextClassifier,
    UnionSource,
)

#: A text-classifier small enough to fit in about a second.
SMALL_MODEL = {
    "buckets": 16384,
    "char_ngrams": [0, 0],
    "epochs": 3,
    "validation_fraction": 0.0,
    "refit": False,
}


@pytest.fixture
def phrasebank(data_dir):
    return {"path": str(data_dir / "financial-phrasebank"), "agreement": "all"}


def test_phrasebank_source(phrasebank):
    counts = check_source(PhraseBankSource, phrasebank)
    assert counts["train"] + counts["test"] == counts["all"] == 2264


def test_csv_source_on_banking77(data_dir):
    folder = data_dir / "banking77"
    config = {"train": str(folder / "train.csv"), "test": str(folder / "test.csv"), "label_column": "category"}
    counts = check_source(CsvSource, config)
    assert counts == {"train": 10003, "test": 3080, "all": 13083}


def test_jsonl_source(tmp_path):
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(20)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    counts = check_source(JsonlSource, {"train": str(tmp_path / "rows.jsonl")})
    assert counts["all"] == 20 and counts["test"] > 0


def test_union_and_feedback_sources(phrasebank, tmp_path):
    log = tmp_path / "feedback.jsonl"
    log.write_text('{"text": "Profit fell", "label": "negative"}\n')
    tables = {
        "sources": {
            "news": {"use": "phrasebank", **phrasebank},
            "corrections": {"use": "feedback", "api": "sentiment", "path": str(log)},
        }
    }
    assert check_source(FeedbackSource, {"api": "sentiment", "path": str(log)}) == {"train": 1, "test": 0, "all": 1}
    counts = check_source(UnionSource, {"sources": ["news", "corrections"]}, tables=tables)
    assert counts["all"] == 2264 + 1


def test_fhir_source(data_dir):
    counts = check_source(FhirSource, {"path": str(data_dir / "fhir-synthea-smart-r4" / "bundles")})
    assert counts["all"] == counts["train"] + counts["test"] > 0


def test_text_classifier(phrasebank):
    records = list(PhraseBankSource(**phrasebank).records("train"))
    data = {"train": records[:600], "test": records[600:800]}
    report = check_model(TextClassifier, SMALL_MODEL, data, inputs=[r["text"] for r in data["test"]])
    assert report.metrics["accuracy"] > 0.6
    assert set(report.metrics["per_class"]) == {"negative", "neutral", "positive"}


def _model_tables(phrasebank) -> dict:
    return {
        "sources": {"news": {"use": "phrasebank", **phrasebank}},
        "models": {"m": {"use": "text-classifier", "data": "news", **SMALL_MODEL}},
    }


def test_echo_api():
    routes = check_api(EchoApi)
    assert [route["name"] for route in routes] == ["checked.echo"]


def test_classify_api(phrasebank, tmp_path):
    routes = check_api(
        ClassifyApi,
        {"model": "m", "feedback_path": str(tmp_path / "feedback.jsonl")},
        tables=_model_tables(phrasebank),
        bad_inputs={"feedback": [{"text": " ", "label": "negative"}], "predict": [{"texts": []}]},
    )
    assert {route["name"] for route in routes} == {"checked.predict", "checked.labels", "checked.feedback"}


def test_label_monitor_api(phrasebank):
    routes = check_api(
        LabelMonitorApi, {"model": "m"}, tables=_model_tables(phrasebank), bad_inputs={"post": [{"items": []}]}
    )
    assert {route["name"] for route in routes} == {"checked.post", "checked.state", "checked.alerts"}
