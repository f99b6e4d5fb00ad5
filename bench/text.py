"""Accuracy benchmark: heirloom's ``text-classifier`` against a scikit-learn peer.

Both models see identical splits, produced by heirloom's own sources: Financial
PhraseBank 50Agree and AllAgree (stratified 80/20, seed 0) and Banking77 (its official
test file). The peer is the usual strong baseline: TF-IDF word 1-2-grams plus ``char_wb``
2-5-grams (FeatureUnion, sublinear tf) into LogisticRegression. Prediction speed is
measured on the whole test set in one call, with probabilities on both sides.

Then the served ``sentiment.predict`` of the finance-sentiment profile: requests per second
with 64 requests in flight (one text each), dynamic batching on against off
(``--set apis.sentiment.batching=false``), two daemons measured in interleaved rounds.

Targets: heirloom's accuracy >= the peer's on every set, each fit under two minutes;
batched serving >= 5x the requests/s of unbatched serving. The script exits 1 when a
target is missed.

    .venv/bin/python bench/text.py [--sets phrasebank-50,banking77] [--threads 2]

Needs the ``bench`` extra (``pip install -c constraints.txt -e '.[dev,bench]'``) and the
data under ``HEIRLOOM_DATA``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from heirloom_plugins.metrics import classification_metrics
from heirloom_plugins.text.model import TextClassifier
from heirloom_plugins.text.sources import CsvSource, PhraseBankSource, TextSource

FIT_LIMIT_S = 120.0
BATCHING_TARGET = 5.0
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_sets(root: Path) -> dict[str, Callable[[], TextSource]]:
    phrasebank = root / "financial-phrasebank"
    banking = root / "banking77"
    return {
        "phrasebank-50": lambda: PhraseBankSource(path=str(phrasebank), agreement="50"),
        "phrasebank-all": lambda: PhraseBankSource(path=str(phrasebank), agreement="all"),
        "banking77": lambda: CsvSource(
            train=str(banking / "train.csv"), test=str(banking / "test.csv"), label_column="category"
        ),
    }


def peer_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        ]
    )
    return make_pipeline(features, LogisticRegression(max_iter=1000))


def run_heirloom(train: list[dict], test_texts: list[str]) -> tuple[list[str], float, float]:
    model = TextClassifier(data="bench")
    began = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    predicted = [p["label"] for p in model.predict(test_texts)]
    return predicted, fitted - began, time.perf_counter() - fitted


def run_peer(train: list[dict], test_texts: list[str]) -> tuple[list[str], float, float]:
    pipeline = peer_pipeline()
    began = time.perf_counter()
    pipeline.fit([r["text"] for r in train], [r["label"] for r in train])
    fitted = time.perf_counter()
    probabilities = pipeline.predict_proba(test_texts)
    predicted = [str(pipeline.classes_[i]) for i in probabilities.argmax(1)]
    return predicted, fitted - began, time.perf_counter() - fitted


def main(argv: list[str] | None = None) -> int:
    sets_help = ", ".join(data_sets(Path()))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=f"data sets: {sets_help}")
    parser.add_argument("--sets", default=sets_help.replace(" ", ""), help="comma-separated data sets (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and for BLAS (default: 2)")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("HEIRLOOM_DATA", DEFAULT_DATA)),
        help="data root (default: $HEIRLOOM_DATA, else ../shared/data)",
    )
    parser.add_argument("--skip-serving", action="store_true", help="only the accuracy table")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per serving measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved serving rounds (medians reported)")
    args = parser.parse_args(argv)
    try:
        import sklearn  # noqa: F401 - only to check that the bench extra is installed
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("bench/text.py needs scikit-learn: pip install -c constraints.txt -e '.[dev,bench]'", file=sys.stderr)
        return 2
    import torch

    available = data_sets(args.data)
    names = [name.strip() for name in args.sets.split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; choose from {sets_help}")
    if not args.data.is_dir():
        parser.error(f"no data at {args.data} (set HEIRLOOM_DATA)")
    torch.set_num_threads(args.threads)
    header = f"{'data set':<15} {'model':<24} {'accuracy':>8} {'macro-F1':>8} {'fit s':>7} {'pred/s':>8}"
    print(header, "-" * len(header), sep="\n", flush=True)
    missed = []
    with threadpool_limits(args.threads):
        for name in names:
            source = available[name]()
            train = list(source.records("train"))
            test = list(source.records("test"))
            texts, truth = [r["text"] for r in test], [r["label"] for r in test]
            scores = {}
            for model, run in (("heirloom text-classifier", run_heirloom), ("sklearn tfidf+logreg", run_peer)):
                predicted, fit_s, predict_s = run(train, texts)
                metrics = classification_metrics(truth, predicted)
                scores[model] = (metrics["accuracy"], fit_s)
                print(
                    f"{name:<15} {model:<24} {metrics['accuracy']:>8.4f} {metrics['macro_f1']:>8.4f} "
                    f"{fit_s:>7.1f} {len(texts) / predict_s:>8.0f}",
                    flush=True,
                )
            (ours, our_fit), (theirs, _) = scores.values()
            if ours < theirs or our_fit > FIT_LIMIT_S:
                missed.append(f"{name}: accuracy {ours:.4f} vs peer {theirs:.4f}, fit {our_fit:.1f}s")
    print()
    if missed:
        print("accuracy target missed: " + "; ".join(missed))
    else:
        print(f"accuracy target met: heirloom >= peer accuracy on every set, each fit under {FIT_LIMIT_S:.0f}s")
    if not args.skip_serving:
        ratio = serving_benchmark(args.data, args.seconds, args.rounds)
        if ratio < BATCHING_TARGET:
            missed.append(f"batching speed-up {ratio:.1f}x < {BATCHING_TARGET}x")
    return 1 if missed else 0


def serving_benchmark(data: Path, seconds: float, rounds: int) -> float:
    """Served predict throughput at 64 in flight, batching on vs off; returns the ratio."""
    from serve import ZmqLoad, measure_throughput, wait_ready

    tmp = Path(tempfile.mkdtemp(prefix="heirloom-text-bench-"))
    env = {**os.environ, "HEIRLOOM_HOME": str(tmp / "home"), "HEIRLOOM_DATA": str(data)}
    command = [sys.executable, "-m", "heirloom"]
    subprocess.run([*command, "train", "finance-sentiment"], env=env, cwd=REPO, check=True, capture_output=True)
    texts = [r["text"] for r in PhraseBankSource(path=str(data / "financial-phrasebank")).records("test")]
    variants = {"batching on": [], "batching off": ["--set", "apis.sentiment.batching=false"]}
    daemons, loads = [], {}
    try:
        for label, extra in variants.items():
            address = f"ipc://{tmp}/{label.replace(' ', '-')}.sock"
            serve = [*command, "serve", "finance-sentiment", "--bind", address, "--log-level", "WARNING", *extra]
            daemons.append(subprocess.Popen(serve, env=env, cwd=REPO))
            wait_ready(address)
            loads[label] = ZmqLoad(address, True, "sentiment.predict", [{"text": t} for t in texts])
        results: dict[str, list[float]] = {label: [] for label in loads}
        for _ in range(rounds):
            for label, load in loads.items():
                results[label].append(measure_throughput(load, 64, seconds))
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(30)
    medians = {label: statistics.median(values) for label, values in results.items()}
    print(f"\nserved sentiment.predict, 64 requests in flight, medians of {rounds} interleaved rounds")
    for label, value in medians.items():
        print(f"  {label:<13} {value:>8.0f} req/s")
    ratio = medians["batching on"] / medians["batching off"]
    verdict = "met" if ratio >= BATCHING_TARGET else "missed"
    print(f"  batching speed-up {ratio:.1f}x (target >= {BATCHING_TARGET:.0f}x: {verdict})")
    return ratio


if __name__ == "__main__":
    sys.exit(main())
