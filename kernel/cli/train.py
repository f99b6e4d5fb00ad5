"""``heirloom train`` and ``heirloom eval``: fit and store models, report their metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from heirloom.cli.common import console, err_console, fail, get_kernel, print_json, resolve_or_exit, set_option
from heirloom.core.components import Report
from heirloom.core.errors import HeirloomError
from heirloom.core.fsutil import write_atomic
from heirloom.store.training import evaluate, model_specs, train


class RichProgress:
    """The model contract's progress reporting, drawn as rich progress bars (one per step;
    a step of unknown length counts up, and is shown complete when the next one starts)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task: Any = None

    def start(self, description: str, total: float | None = None) -> None:
        self.finish()
        self.task = self.progress.add_task(description, total=total)

    def finish(self) -> None:
        """Show the current step as complete."""
        if self.task is not None:
            current = next(task for task in self.progress.tasks if task.id == self.task)
            done = current.total if current.total is not None else current.completed
            self.progress.update(self.task, total=done, completed=done)

    def advance(self, amount: float = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, amount)

    def log(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False)


def progress_bars(transient: bool = False) -> Progress:
    """Bars on stderr (stdout stays the report, or JSON): step, bar, count, elapsed time."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=err_console, transient=transient)


@click.command("train")
@click.argument("profile")
@click.argument("models", nargs=-1)
@set_option
def train_command(profile: str, models: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Fit MODELS of PROFILE (default: all) and store each as a new version.

    Each model fits on the train split of its data source (warm-starting from its
    `inherit` ref when set), is evaluated on the test split, and is stored in the
    artifact store as PROJECT/MODEL@N with its lineage and metrics.
    """
    kernel = get_kernel()
    resolved = resolve_or_exit(profile, overrides)
    try:
        specs = model_specs(resolved, models)
        store = kernel.store(resolved)
        for spec in specs:
            with progress_bars() as bars:
                progress = RichProgress(bars)
                trained = train(kernel, resolved, spec, store, progress)
                progress.finish()
            console.print(trained.report.text, markup=False, highlight=False)
            parent = f" (parent {trained.artifact.parent})" if trained.artifact.parent else ""
            console.print(f"stored [bold]{trained.artifact.ref}[/] {trained.artifact.digest[:12]}{parent}")
    except HeirloomError as exc:
        fail(f"error: {exc}")


@click.command("eval")
@click.argument("profile")
@click.argument("models", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a self-contained HTML report to this file: tables, the confusion matrix and, "
    "for rankers, metric-at-k curves (needs the 'ui' extra).",
)
@set_option
def eval_command(
    profile: str, models: tuple[str, ...], as_json: bool, html_path: Path | None, overrides: tuple[str, ...]
) -> None:
    """Evaluate the served version of MODELS of PROFILE (default: all) on their test split.

    JSON: {"models": {NAME: {"version", "accuracy", "macro_f1", "per_class": {LABEL:
    {"precision", "recall", "f1", "support"}}, ...}}}.
    """
    kernel = get_kernel()
    resolved = resolve_or_exit(profile, overrides)
    results: dict[str, Any] = {}
    reports: list[tuple[str | None, Report]] = []
    try:
        if html_path is not None:
            from heirloom.reports import check_available

            check_available()
        for spec in model_specs(resolved, models):
            with progress_bars(transient=True) as bars:
                version, report = evaluate(kernel, resolved, spec, RichProgress(bars))
            results[spec.name] = {"version": version, **report.metrics}
            reports.append((version, report))
            if not as_json:
                console.print(f"[bold]{version}[/]")
                console.print(report.text, markup=False, highlight=False)
        if html_path is not None:
            write_html_report(html_path, resolved.name, reports)
            err_console.print(f"wrote {html_path}", markup=False, highlight=False)
    except HeirloomError as exc:
        fail(f"error: {exc}")
    if as_json:
        print_json({"models": results})


def write_html_report(path: Path, profile: str, reports: list[tuple[str | None, Report]]) -> None:
    """One self-contained page with a section per evaluated model version."""
    from heirloom.reports import report_fragment, report_page

    sections = [
        {
            "title": version,
            "subtitle": f"evaluated on the test split of profile {profile}",
            "html": report_fragment(report.metrics, report.text),
        }
        for version, report in reports
    ]
    write_atomic(path, report_page(f"Evaluation of {profile}", sections).encode())


COMMANDS = [train_command, eval_command]
