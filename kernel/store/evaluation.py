"""``heirloom eval`` beyond models: apis with checks of their own, and one summary table.

An api whose type overrides ``Api.evaluate`` (record analysis, a retrieval index) is
evaluated beside the models, on the test split of its source. When reports carry a
``summary`` row in their metrics (``precision``, ``recall``, ``f1``, ``support``, and
``tp``/``fp``/``fn`` for the micro average), ``summary_table`` puts them in one table with
a row per component, then the micro, macro and weighted averages over those rows.
Domain-free: what a row measures is the component's business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heirloom.core.components import Api, Report, Source
from heirloom.store.compare import TEST
from heirloom.store.training import data_source, named_specs

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.schema import ComponentSpec, ResolvedProfile

SUMMARY_KEYS = ("precision", "recall", "f1", "support")
COUNTS = ("tp", "fp", "fn")


def evaluates(spec: ComponentSpec) -> bool:
    """True for models, and for apis whose type implements ``evaluate``."""
    return spec.kind == "model" or (spec.kind == "api" and spec.cls.evaluate is not Api.evaluate)


def evaluated_specs(profile: ResolvedProfile, names: tuple[str, ...]) -> list[ComponentSpec]:
    """The components ``heirloom eval`` evaluates: all, or the named ones (unknown names fail)."""
    found = [spec for spec in profile.components if evaluates(spec)]
    if not names:  # an api whose optional source is unset has nothing to be evaluated on: left out, not a failure
        found = [spec for spec in found if spec.kind == "model" or any(kind == "source" for kind, _ in spec.depends)]
    return named_specs(profile, found, names, "evaluated component")


def evaluate_api(kernel: Kernel, profile: ResolvedProfile, spec: ComponentSpec, split: str = TEST) -> Report:
    """An api's own evaluation on a split (test) of its source (models it uses are served)."""
    with kernel.system(profile, only={("api", spec.name)}, serve_models=True) as system:
        api = system.component(spec.name, "api")
        source: Source = system.component(data_source(spec, api), "source")
        return api.evaluate(source.records(split))


def summary(reports: dict[str, Report]) -> dict[str, Any] | None:
    """``{"rows": {name: row}, "micro_avg", "macro_avg", "weighted_avg"}`` over the reports
    that carry a ``summary``; None when none does. The micro average needs every row's counts."""
    given = {name: r.metrics["summary"] for name, r in reports.items() if isinstance(r.metrics.get("summary"), dict)}
    if not given:
        return None
    rows = {name: {key: row[key] for key in SUMMARY_KEYS} for name, row in given.items()}
    total = sum(row["support"] for row in rows.values())

    def mean(key: str, weighted: bool) -> float:
        weights = [row["support"] if weighted else 1 for row in rows.values()]
        return sum(row[key] * w for row, w in zip(rows.values(), weights, strict=True)) / (sum(weights) or 1)

    result: dict[str, Any] = {"rows": rows}
    if all(all(key in row for key in COUNTS) for row in given.values()):
        tp, fp, fn = (sum(row[key] for row in given.values()) for key in COUNTS)
        precision, recall = tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result["micro_avg"] = {"precision": precision, "recall": recall, "f1": f1, "support": total}
    for name, weighted in (("macro_avg", False), ("weighted_avg", True)):
        result[name] = {key: mean(key, weighted) for key in ("precision", "recall", "f1")} | {"support": total}
    return result


def summary_table(table: dict[str, Any], digits: int = 3) -> str:
    """The summary as text: a row per component, then the averages."""
    names = [*table["rows"], *(key.replace("_", " ") for key in ("micro_avg", "macro_avg", "weighted_avg"))]
    width = max(len(name) for name in names)
    lines = [f"{'':<{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]

    def line(name: str, row: dict[str, Any]) -> str:
        cells = " ".join(f"{row[key]:>9.{digits}f}" for key in ("precision", "recall", "f1"))
        return f"{name:<{width}} {cells} {row['support']:>9}"

    lines += [line(name, row) for name, row in table["rows"].items()]
    lines.append("")
    lines += [
        line(key.replace("_", " "), table[key]) for key in ("micro_avg", "macro_avg", "weighted_avg") if key in table
    ]
    return "\n".join(lines) + "\n"
