"""Inheritance gain: banking-intents trained from scratch vs warm-started from the core.

The core model is fitted on the first 40 Banking77 intents (alphabetical order of
categories.json) with all their training data. Then, for 5, 10 and 20 training examples
per intent (a seeded choice) over all 77 intents, two models are fitted on identical data:
one from scratch, one inheriting the core (label space 40 -> 77; a new intent starts as
the blend of the core's intents that the core reads its examples as). Both are evaluated
on the whole official test file: accuracy on all 77 intents, on the 40 the core knew and
on the 37 new ones, and the epochs L-BFGS took to converge (a warm start begins near
the optimum). Accuracies are mean ± std over ``--seeds`` (the few-shot sample moves with
the seed).

Target: inherited >= scratch (means) on the new 37 and on all 77, at every shot count;
the script exits 1 when it is missed.

    .venv/bin/python bench/inherit.py [--shots 5,10,20] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from options import add_data_option, positive_int, positive_ints, require_data
from spread import seeds_option, spread

from heirloom_plugins.metrics import classification_metrics
from heirloom_plugins.text.model import TextClassifier
from heirloom_plugins.text.sources import CsvSource


def banking(root: Path, **settings) -> CsvSource:
    """Banking77 with the whole training file as ``train`` (no validation split: the few
    examples per intent all train)."""
    folder = root / "banking77"
    return CsvSource(
        train=str(folder / "train.csv"),
        test=str(folder / "test.csv"),
        label_column="category",
        labels_file=str(folder / "categories.json"),
        validation_fraction=0,
        **settings,
    )


def accuracy(model: TextClassifier, test: list[dict], labels: set[str]) -> float:
    chosen = [r for r in test if r["label"] in labels]
    predicted = [p["label"] for p in model.predict([r["text"] for r in chosen])]
    return classification_metrics([r["label"] for r in chosen], predicted)["accuracy"]


def epochs(model: TextClassifier) -> int:
    """The epochs the kept fit ran (to convergence, or the ``epochs`` cap)."""
    return int(model.state().metadata["training"]["selection"]["epochs"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shots", type=positive_ints, default=[5, 10, 20], help="training examples per intent (comma list)"
    )
    parser.add_argument("--seeds", type=seeds_option, default=[0, 1, 2], help="sampling seeds (default 0,1,2)")
    add_data_option(parser)
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    args = parser.parse_args()
    require_data(parser, args.data, "banking77/categories.json", "banking77/train.csv", "banking77/test.csv")
    import torch

    torch.set_num_threads(args.threads)
    everything = json.loads((args.data / "banking77" / "categories.json").read_text())
    old = set(sorted(everything)[:40])
    new = set(everything) - old
    began = time.perf_counter()
    core = TextClassifier(data="core")
    core.fit(banking(args.data, first_labels=40).records("train"))
    test = list(banking(args.data).records("test"))
    print(f"core (40 intents, full data): accuracy on its 40 intents {accuracy(core, test, old):.4f}, "
          f"fitted in {time.perf_counter() - began:.1f}s")  # fmt: skip
    print(f"accuracies: mean ± std over seeds {','.join(map(str, args.seeds))}; epochs and fit s: medians\n")
    header = f"{'per intent':>10} {'start':<10} {'all 77':>15} {'old 40':>15} {'new 37':>15} {'epochs':>7} {'fit s':>6}"
    print(header, "-" * len(header), sep="\n")
    missed = []
    for shots in args.shots:
        rows: dict[str, list[tuple[float, ...]]] = {"scratch": [], "inherited": []}
        for seed in args.seeds:
            train = list(banking(args.data, train_per_label=shots, seed=seed).records("train"))
            for start, parent in (("scratch", None), ("inherited", core.state())):
                model = TextClassifier(data="banking", seed=seed)
                fit_began = time.perf_counter()
                model.fit(train, parent=parent)
                fit_s = time.perf_counter() - fit_began
                scores = (
                    accuracy(model, test, set(everything)),
                    accuracy(model, test, old),
                    accuracy(model, test, new),
                )
                rows[start].append((*scores, epochs(model), fit_s))
        for start, samples in rows.items():
            columns = list(zip(*samples, strict=True))
            cells = " ".join(f"{spread(column):>15}" for column in columns[:3])
            medians = f"{statistics.median(columns[3]):>7.0f} {statistics.median(columns[4]):>6.1f}"
            print(f"{shots:>10} {start:<10} {cells} {medians}", flush=True)
        scratch, inherited = ([statistics.fmean(c) for c in zip(*rows[k], strict=True)] for k in rows)
        for column, what in ((2, "new 37"), (0, "all 77")):
            if inherited[column] < scratch[column]:
                missed.append(
                    f"{shots} per intent, {what}: inherited {inherited[column]:.4f} < scratch {scratch[column]:.4f}"
                )
    print(
        "\ntarget "
        + ("missed: " + "; ".join(missed) if missed else "met: inherited >= scratch on the new 37 and all 77")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
