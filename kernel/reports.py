"""Evaluation reports as pictures and self-contained HTML: ``heirloom eval --html``, ``heirloom ui``.

A model's ``evaluate`` returns ``heirloom.Report(metrics, text)``; this module draws the
parts of ``metrics`` it recognises (docs/PLUGINS.md, "Metrics the reports draw"):

- scalar metrics (``accuracy``, ``macro_f1``...) and one level of nested scalars
  (``macro_avg.precision``) as a table;
- ``per_class``: ``{label: {"precision", "recall", "f1", "support"}}`` as a table;
- ``confusion_matrix``: ``{"labels": [...], "matrix": [[...]]}`` (rows: true label) as a
  picture (up to ``CONFUSION_LIMIT`` labels), coloured by row share (recall) and annotated with
  counts when it is small; a picture that fails is said in its place, the tables still drawn;
- ``NAME@K`` keys (``recall@10``, ``ndcg@5``, for rankers) as one curve per NAME over K.

Pictures are PNGs drawn with matplotlib's object API (no pyplot global state, safe in a
web server's threads) and embedded as data URIs, so one HTML file holds everything.
matplotlib and jinja2 come with the ``ui`` extra and are imported on first use.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import logging
import re
import threading
import warnings
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from heirloom.core.errors import HeirloomError

AT_K = re.compile(r"^(?P<name>.+)@(?P<k>[0-9]+)$")
#: Above this many labels the confusion picture has no per-cell numbers.
ANNOTATE_LIMIT = 20
#: Longer labels are cut with an ellipsis on the picture's axes (the tables show them whole).
TICK_LABEL_LIMIT = 24
#: Above this many labels the confusion matrix is not drawn: its ticks would be unreadable and the
#: drawing took seconds (500 labels: 5 s, 1,500: 50 s); the per-class table lists every label.
CONFUSION_LIMIT = 100
#: Families tried in turn for each character of a label, those installed: matplotlib's own, then
#: ones covering CJK and other scripts.
FONT_FAMILIES = (
    "DejaVu Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "Arial Unicode MS",
)
log = logging.getLogger("heirloom.reports")
_MISSING_SAID = threading.Event()  # the missing-characters warning was logged


def extra_hint() -> str:
    """How to install the ``ui`` extra: ``pip install 'heirloom[ui]'``, led in heirloom's own checkout (the current
    folder) by the checkout's way, with its constraints: said in a plugin's folder, that named the plugin's own
    extra and a constraints.txt not there (checker h356 F5). Worked out when said: it reads files of the folder."""
    released = "pip install 'heirloom[ui]'"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if Path("constraints.txt").is_file() and '\nname = "heirloom"\n' in Path("pyproject.toml").read_text():
            return f"pip install -c constraints.txt -e '.[ui]' (or {released})"
    return released


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        needs = f"evaluation pictures need {module.split('.')[0]} (the 'ui' extra)"
        raise HeirloomError(f"{needs}: {extra_hint()}") from exc


def check_available() -> None:
    """Raise a HeirloomError naming the extra unless matplotlib and jinja2 import."""
    _require("matplotlib")
    _require("jinja2")


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float | int | str]:
    """Top-level scalars and one level of nested scalars (``macro_avg.f1``), in order."""
    found: dict[str, float | int | str] = {}
    for key, value in metrics.items():
        if _scalar(value):
            found[key] = value
        elif isinstance(value, dict) and key not in ("per_class", "confusion_matrix"):
            found.update({f"{key}.{sub}": inner for sub, inner in value.items() if _scalar(inner)})
    return found


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def at_k_curves(metrics: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """``{"recall": [(1, 0.2), (5, 0.4), ...]}`` from ``recall@1``, ``recall@5``... keys."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for key, value in metrics.items():
        match = AT_K.match(key)
        if match and isinstance(value, int | float) and not isinstance(value, bool):
            curves.setdefault(match["name"], []).append((int(match["k"]), float(value)))
    return {name: sorted(points) for name, points in curves.items() if len(points) > 1}


def confusion_png(confusion: dict[str, Any]) -> bytes:
    """The confusion matrix as a PNG: rows are true labels, cells coloured by row share."""
    figure_module = _require("matplotlib.figure")
    labels, matrix = list(confusion["labels"]), confusion["matrix"]
    count = len(labels)
    if len(matrix) != count or any(not isinstance(row, list) or len(row) != count for row in matrix):
        raise ValueError(f"its matrix is not {count} x {count}, one row and column per label")  # drawn: h406 F2
    families = _label_fonts(labels)
    ticks = [_shortened(str(label)) for label in labels]
    shares = [[cell / (sum(row) or 1) for cell in row] for row in matrix]
    side = min(28.0, max(4.5, 0.32 * count + 2.5))
    figure = figure_module.Figure(figsize=(side + 1.2, side), dpi=90 if count <= 40 else 72, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.6, label="share of the true label")
    font = 9 if count <= 20 else max(4, 9 - count // 12)
    # parse_math off: a label such as "$10-$20" is text, not matplotlib mathtext (it was drawn as "10 minus 20",
    # and "cost $\foo$ x" failed the whole picture)
    axes.set_xticks(range(count), ticks, rotation=90, fontsize=font, family=families, parse_math=False)
    axes.set_yticks(range(count), ticks, fontsize=font, family=families, parse_math=False)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if count <= ANNOTATE_LIMIT:
        for row, (counts, row_shares) in enumerate(zip(matrix, shares, strict=True)):
            for column, (cell, share) in enumerate(zip(counts, row_shares, strict=True)):
                colour = "white" if share > 0.6 else "black"
                axes.text(
                    column, row, str(cell), ha="center", va="center", fontsize=font, color=colour, parse_math=False
                )
    return _png(figure)


def _shortened(label: str) -> str:
    return label if len(label) <= TICK_LABEL_LIMIT else label[: TICK_LABEL_LIMIT - 1] + "…"


@functools.cache
def _fonts() -> tuple[list[str], frozenset[int]]:
    """The installed families of FONT_FAMILIES and the characters they cover. matplotlib's own
    warning per missing glyph (two a picture) is silenced: ``_label_fonts`` says it once."""
    font_manager = _require("matplotlib.font_manager")
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    families = [family for family in FONT_FAMILIES if family in installed] or ["sans-serif"]
    covered: set[int] = set()
    for family in families:
        path = font_manager.findfont(font_manager.FontProperties(family=family))
        covered.update(font_manager.get_font(path).get_charmap())
    warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from font", UserWarning)
    return families, frozenset(covered)


def _label_fonts(labels: list[Any]) -> list[str]:
    """The families to draw ``labels`` with; the first time a label has a character none of them
    has, a warning says so (once a process, not twice a picture)."""
    families, covered = _fonts()
    lacking = sorted({c for label in labels for c in str(label) if ord(c) not in covered and c.isprintable()})
    if lacking and not _MISSING_SAID.is_set():
        _MISSING_SAID.set()
        log.warning(
            "the installed fonts (%s) lack characters of some labels (%s): the confusion-matrix picture draws "
            "them as boxes; the HTML tables show the labels whole",
            ", ".join(families),
            "".join(lacking[:8]),
        )
    return families


def at_k_png(curves: dict[str, list[tuple[int, float]]]) -> bytes:
    """Metric-at-k curves (one line per metric) as a PNG."""
    figure_module = _require("matplotlib.figure")
    figure = figure_module.Figure(figsize=(6.5, 4), dpi=90, layout="constrained")
    axes = figure.add_subplot()
    for name, points in sorted(curves.items()):
        axes.plot([k for k, _ in points], [v for _, v in points], marker="o", label=name)
    axes.set_xlabel("k")
    axes.set_ylabel("metric at k")
    axes.set_ylim(0, max(1.0, *(v for points in curves.values() for _, v in points)))
    axes.grid(alpha=0.3)
    for text in axes.legend().get_texts():  # a metric's name is text, never mathtext
        text.set_parse_math(False)
    return _png(figure)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def template_environment(package: str) -> Any:
    """A Jinja2 environment for the ``templates`` folder of ``package``: HTML autoescaped,
    and an undefined name is an error rather than an empty string."""
    jinja2 = _require("jinja2")
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _environment() -> Any:
    return template_environment("heirloom")


def report_fragment(metrics: dict[str, Any], text: str | None = None) -> str:
    """The HTML of one evaluation: metric tables and pictures, to embed in a page."""
    confusion = metrics.get("confusion_matrix") if _is_confusion(metrics.get("confusion_matrix")) else None
    curves = at_k_curves(metrics)
    per_class = metrics.get("per_class") if isinstance(metrics.get("per_class"), dict) else None
    absent = absent_labels(per_class or {}, confusion)
    answered = [  # no record yet predicted: its precision alone (0), out of the averages too
        label
        for label, row in (per_class or {}).items()
        if isinstance(row, dict) and row.get("support") == 0 and label not in absent
    ]
    return (
        _environment()
        .get_template("report_fragment.html.j2")
        .render(
            scalars=scalar_metrics(metrics),
            per_class=per_class,
            absent=absent,
            answered=answered,
            confusion=confusion_picture(confusion) if confusion is not None else None,
            labels=len(confusion["labels"]) if confusion is not None else 0,
            curves=_picture("the metrics at k", at_k_png, curves) if curves else None,
            text=text,
        )
    )


def confusion_picture(confusion: dict[str, Any]) -> dict[str, str]:
    """``{"src": DATA_URI}``, or ``{"note": WHY}`` when the matrix has over ``CONFUSION_LIMIT`` labels or
    cannot be drawn."""
    count = len(confusion["labels"])
    if count > CONFUSION_LIMIT:
        return {
            "note": f"Not drawn: {count} labels are over the {CONFUSION_LIMIT} a readable picture holds "
            "(the per-class table lists every label)."
        }
    return _picture("the confusion matrix", confusion_png, confusion)


def _picture(what: str, draw: Any, data: Any) -> dict[str, str]:
    """A picture's failure (a plugin's metrics may have any shape) costs that picture only: the
    tables and the other pictures are still shown, with the error said where the picture would be."""
    try:
        return {"src": data_uri(draw(data))}
    except Exception as exc:  # noqa: BLE001 - any failure of matplotlib on stored data is this picture's
        error = " ".join(f"{type(exc).__name__}: {exc}".split())  # matplotlib's parse errors span lines
        log.warning("cannot draw %s: %s", what, error)
        return {"note": f"Cannot draw {what}: {error}"}


def absent_labels(per_class: dict[str, Any], confusion: dict[str, Any] | None) -> list[str]:
    """Labels with no record in the split that were never predicted: their zeros are no score
    (the averages leave them out), so the table shows ``-`` for them, as the text report does."""
    predicted: dict[Any, Any] = {}
    if confusion is not None:
        with contextlib.suppress(TypeError, ValueError):  # a plugin's ragged or non-numeric matrix: no counts
            predicted = dict(zip(confusion["labels"], map(sum, zip(*confusion["matrix"], strict=True)), strict=True))
    return [
        label
        for label, row in per_class.items()
        if isinstance(row, dict) and row.get("support") == 0 and not predicted.get(label)
    ]


def _is_confusion(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("labels")) and isinstance(value.get("matrix"), list)


def report_page(title: str, sections: list[dict[str, Any]]) -> str:
    """A self-contained HTML page: ``sections`` are ``{"title", "subtitle", "html"}``."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        _environment().get_template("report_page.html.j2").render(title=title, sections=sections, generated=generated)
    )


def report_css() -> str:
    """The style sheet report fragments expect: a page that embeds them includes it."""
    return files("heirloom").joinpath("templates", "report.css").read_text()
