"""Inheritance gain: banking-intents trained from scratch vs warm-started from the core.

The core model is fitted on the first 40 Banking77 intents (alphabetical order of
categories.json) with all their training data. Then, for 5, 10 and 20 training examples
per intent (a seeded choice) over all 77 intents, two models are fitted on identical data:
one from scratch, one inheriting the core (label space 40 -> 77). Both are evaluated on
the whole official test file: accuracy on all 77 intents, on the 40 the core knew and on
the 37 new ones, and the epoch at which validation loss stopped improving (the plateau).

    .venv/bin/python bench/inherit.py [--shots 5,10,20] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from heirloom_plugins.metrics import classification_metrics
from heirloom_plugins.text.model import TextClassifier
from heirloom_plugins.text.sources import CsvSource

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def banking(root: Path, **settings) -> CsvSource:
    folder = root / "banking77"
    return CsvSource(
        train=str(folder / "train.csv"),
        test=str(folder / "test.csv"),
        label_column="category",
        labels_file=str(folder / "categories.json"),
        **settings,
    )


def accuracy(model: TextClassifier, test: list[dict], labels: set[str]) -> float:
    chosen = [r for r in test if r["label"] in labels]
    predicted = [p["label"] for p in model.predict([r["text"] for r in chosen])]
    return classification_metrics([r["label"] for r in chosen], predicted)["accuracy"]


def plateau(model: TextClassifier) -> int:
    """The epoch with the lowest validation loss (what early stopping kept)."""
    return int(model.state().metadata["training"]["selection"]["best_epoch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", default="5,10,20", help="training examples per intent (comma list)")
    parser.add_argument("--seeds", default="0", help="sampling seeds; medians over them are reported")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HEIRLOOM_DATA", DEFAULT_DATA)))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    everything = json.loads((args.data / "banking77" / "categories.json").read_text())
    old = set(sorted(everything)[:40])
    new = set(everything) - old
    began = time.perf_counter()
    core_source = banking(args.data, first_labels=40)
    core = TextClassifier(data="core")
    core.fit(core_source.records("train"))
    test = list(banking(args.data).records("test"))
    print(f"core (40 intents, full data): accuracy on its 40 intents {accuracy(core, test, old):.4f}, "
          f"fitted in {time.perf_counter() - began:.1f}s\n")  # fmt: skip
    header = (
        f"{'per intent':>10} {'start':<10} {'all 77':>7} {'old 40':>7} {'new 37':>7} {'plateau epoch':>13} {'fit s':>6}"
    )
    print(header, "-" * len(header), sep="\n")
    seeds = [int(s) for s in args.seeds.split(",")]
    for shots in (int(s) for s in args.shots.split(",")):
        rows: dict[str, list[tuple[float, ...]]] = {"scratch": [], "inherited": []}
        for seed in seeds:
            train = list(banking(args.data, train_per_label=shots, seed=seed).records("train"))
            for start, parent in (("scratch", None), ("inherited", core.state())):
                model = TextClassifier(data="banking")
                fit_began = time.perf_counter()
                model.fit(train, parent=parent)
                fit_s = time.perf_counter() - fit_began
                scores = (
                    accuracy(model, test, set(everything)),
                    accuracy(model, test, old),
                    accuracy(model, test, new),
                )
                rows[start].append((*scores, plateau(model), fit_s))
        for start, samples in rows.items():
            median = [statistics.median(column) for column in zip(*samples, strict=True)]
            print(f"{shots:>10} {start:<10} {median[0]:>7.4f} {median[1]:>7.4f} {median[2]:>7.4f} "
                  f"{median[3]:>13.0f} {median[4]:>6.1f}")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
