"""The ``label-monitor`` api: classify a stream of timestamped texts, alert on a jump.

The rule (also in docs/TEXT.md): let T be the latest item time. The *window* holds the
items in (T - window, T]; the *baseline* holds those in (T - window - baseline, T - window].
With s the share of ``label`` in the window and b its share in the baseline, an alert is
raised when both periods have at least ``min_items`` items, s >= ratio x b and
s - b >= min_increase. It is raised once, when the condition becomes true, and marked
resolved when it stops holding. Items older than the baseline are forgotten. A post with
``replay`` (the stream posted again after a restart) adds its items without judging the
rule: replayed in chunks, an incident raised and resolved before the restart was raised anew.

Item times must be finite and at most ``max_future`` seconds ahead of the daemon's clock
(one item from the far future would otherwise move T and wipe the history); a request
with a bad time, or a text longer than the predict route accepts, is refused whole,
before anything changes. Memory is bounded: at most ``max_tracked`` item times, and only
the texts of the newest matching items (the alert's examples).
"""

from __future__ import annotations

import bisect
import difflib
import logging
import math
import re
import threading
import time
from collections import deque
from datetime import UTC
from typing import Any

import attrs

import heirloom
from heirloom_plugins.model_needs import (
    PerInstance,
    classification_problem,
    classifier_problems,
    first_problem,
    labels_of,
    predictions_of,
)
from heirloom_plugins.text.api import CLASSIFY_DOC
from heirloom_plugins.textfiles import normal_setting
from heirloom_plugins.timelines import ISO_EXAMPLES, iso_moment

log = logging.getLogger("heirloom.text")

#: Texts of matching items kept for an alert's examples (the newest ones).
EXAMPLES = 3
KEPT_TEXTS = 16
#: How far a time read as milliseconds may be from now to be said to be one (a JS ``Date.now()``).
DAY_SECONDS = 86_400.0


def _timestamp(value: int | float | str | None, position: int, now: float, max_future: float) -> float:
    """Seconds since the epoch from a number or an ISO 8601 string (default: now; without a
    zone, UTC: the daemon's own zone refused a current time west of Greenwich and compared the
    wrong periods east of it), finite and not more than ``max_future`` seconds ahead of ``now``."""
    field = f"body.items[{position}].time"
    if value is None:
        return now
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = float(value)
    else:
        try:
            parsed = iso_moment(str(value))  # without a zone: UTC, as the data sources read it
            moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError):
            number = re.fullmatch(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*", str(value))  # h405 F4
            said = " (seconds go as a JSON number, not text)" if number else ""
            expected = f"seconds since the epoch (a number) or an ISO 8601 date or date-time ({ISO_EXAMPLES})"
            message = f"{field}: expected {expected}{said}, got {value!r}"
            raise heirloom.RequestError("INVALID_ARGUMENT", message, field) from None
    if not math.isfinite(moment):
        raise heirloom.RequestError("INVALID_ARGUMENT", f"{field}: {value!r} is not a finite number", field)
    if moment > now + max_future:
        hint = "; it reads as milliseconds: send seconds" if abs(moment / 1000 - now) <= DAY_SECONDS else ""
        raise heirloom.RequestError(
            "INVALID_ARGUMENT",
            f"{field}: {value!r} is not a time up to {max_future:g} s from now (the daemon's clock says {now:.0f})"
            + hint,
            field,
        )
    return moment


def post_input(max_chars: int, max_items: int) -> type:
    """The attrs class of a post body, with this api's limits in its validators (and so in ``_routes``)."""

    @attrs.define
    class Item:
        """A text and when it was published (epoch seconds or ISO 8601; default: now)."""

        text: str = attrs.field(validator=heirloom.text_limit(max_chars, blank=False))  # as predict: h400 F3
        time: int | float | str | None = attrs.field(  # an int kept as sent, quoted so when refused (checker h344 F5)
            default=None, metadata={"schema": {"description": "seconds since the epoch, or an ISO 8601 time"}}
        )

    @attrs.define
    class PostInput:
        """Texts to classify and add to the monitored stream."""

        items: list[Item] = attrs.field(validator=heirloom.list_limit(max_items))
        #: Items posted again to rebuild the window and baseline (after a restart): no alert raised or resolved.
        replay: bool = False

    return attrs.resolve_types(PostInput, localns={"Item": Item})  # a local class: name it for the annotation


@attrs.define
class LabelMonitorApi(heirloom.Api):
    """Watches the share of one label in a stream of texts and raises alerts on jumps."""

    #: The classifier that labels the stream.
    model: str = heirloom.ref("model")
    #: The label whose share is watched (e.g. ``negative``).
    label: str = attrs.field(default="negative", converter=normal_setting)
    #: Seconds of the current window and of the baseline period before it.
    window: float = attrs.field(default=3600.0, validator=heirloom.above(0))
    baseline: float = attrs.field(default=86_400.0, validator=heirloom.above(0))
    #: Alert when the window's share is at least ``ratio`` x the baseline's ...
    ratio: float = attrs.field(default=2.0, validator=heirloom.above(0))
    #: ... and at least ``min_increase`` above it (absolute share, 0..1) ...
    min_increase: float = attrs.field(default=0.15, validator=heirloom.at_least(0))
    #: ... and both periods hold at least this many items.
    min_items: int = attrs.field(default=10, validator=heirloom.above(0))
    #: Alerts remembered for ``<name>.alerts``.
    max_alerts: int = attrs.field(default=1000, validator=heirloom.above(0))
    #: Longest text and most items per ``post`` (as the classify api's predict).
    max_text_chars: int = attrs.field(default=10_000, validator=heirloom.above(0))
    max_items: int = attrs.field(default=256, validator=heirloom.above(0))
    #: Seconds an item's time may be ahead of the daemon's clock: clock skew, no more (an item
    #: ahead moves T, so the items before it count as baseline until the clock catches up).
    max_future: float = attrs.field(default=300.0, validator=heirloom.above(0))
    #: Item times kept at most (the oldest are forgotten first).
    max_tracked: int = attrs.field(default=1_000_000, validator=heirloom.above(0))

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.handle = ctx.model(self.model)
        self._labels = PerInstance(labels_of)
        self.input = post_input(self.max_text_chars, self.max_items)
        self._lock = threading.Lock()
        self._times: list[float] = []  # sorted item times
        self._flags: list[bool] = []  # whether the item at the same position has `label`
        self._texts: list[tuple[float, str]] = []  # the newest matching items, sorted by time
        self._alerts: deque[dict[str, Any]] = deque(maxlen=self.max_alerts)
        self._active: dict[str, Any] | None = None

    def check(self, models: dict[str, heirloom.Model]) -> list[tuple[str, str]]:
        """The watched label must be one the model predicts, or the monitor never alerts; a
        model of another type must give labels and per text a label (as ``classify`` reads)."""
        if (model := models.get(self.model)) is None:
            return []
        if problems := classifier_problems("model", model, "label-monitor", CLASSIFY_DOC):
            return problems
        labels = list(model.labels)
        if self.label not in labels:
            close = "".join(f"; did you mean {c!r}?" for c in difflib.get_close_matches(self.label, labels, 1))
            known = ", ".join(labels)
            return [("label", f"{self.label!r} is not a label of model {self.model!r}{close} (labels: {known})")]
        return []

    def routes(self) -> list[heirloom.Route]:
        return [
            heirloom.Route("post", handler=self.post, input=self.input, description=__doc__.split("\n\n")[0]),
            heirloom.Route("state", handler=self.state, inline=True, description="Window and baseline shares."),
            heirloom.Route("alerts", handler=self.alerts, inline=True, description="Alerts raised so far."),
        ]

    def post(self, body: Any) -> heirloom.Versioned:
        now = time.time()
        times = [_timestamp(item.time, position, now, self.max_future) for position, item in enumerate(body.items)]
        model, version = heirloom.served_model(self.handle)
        predictions, labels = predictions_of(model, [item.text for item in body.items]), self._labels(model)
        if problem := first_problem(predictions, classification_problem, labels):
            raise heirloom.RequestError("INTERNAL", f"{type(model).__name__}: {problem} ({CLASSIFY_DOC})")
        # the reply is made before the state changes: a prediction it cannot read fails the request alone
        labelled = [{"label": p["label"], "probability": _probability(p)} for p in predictions]
        with self._lock:  # nothing above changed any state: a refused request leaves it whole
            for moment, item, prediction in zip(times, body.items, predictions, strict=True):
                index = bisect.bisect(self._times, moment)
                self._times.insert(index, moment)
                self._flags.insert(index, prediction["label"] == self.label)
                if prediction["label"] == self.label:
                    bisect.insort(self._texts, (moment, item.text))
                    del self._texts[:-KEPT_TEXTS]
            self._forget_old()
            raised, summary = (None, self._summary()) if body.replay else self._evaluate()
        return heirloom.Versioned({"predictions": labelled, "alert": raised, "state": summary}, version)

    def state(self, body: Any) -> dict[str, Any]:
        with self._lock:
            return self._summary()

    def alerts(self, body: Any) -> dict[str, Any]:
        with self._lock:
            return {"alerts": list(self._alerts)}

    def _period(self, start: float, end: float) -> tuple[int, int]:
        """(items, items with the label) with start < time <= end."""
        low, high = bisect.bisect_right(self._times, start), bisect.bisect_right(self._times, end)
        return high - low, sum(self._flags[low:high])

    def _forget_old(self) -> None:
        horizon = self._times[-1] - self.window - self.baseline
        cut = max(bisect.bisect_right(self._times, horizon), len(self._times) - self.max_tracked)
        del self._times[:cut], self._flags[:cut]
        del self._texts[: bisect.bisect_right(self._texts, (horizon, "\U0010ffff"))]

    def _summary(self) -> dict[str, Any]:
        if not self._times:
            return {"label": self.label, "window": None, "baseline": None, "alerting": False}
        latest = self._times[-1]
        (n, k), (nb, kb) = (
            self._period(latest - self.window, latest),
            self._period(latest - self.window - self.baseline, latest - self.window),
        )
        return {
            "label": self.label,
            "latest": latest,
            "window": {"items": n, "matching": k, "share": k / n if n else 0.0},
            "baseline": {"items": nb, "matching": kb, "share": kb / nb if nb else 0.0},
            "alerting": self._active is not None,
        }

    def _evaluate(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Raise an alert when the rule starts holding, resolve it when it stops; returns the
        alert raised now (or None) and the summary it was judged on."""
        summary = self._summary()
        window, base = summary["window"], summary["baseline"]
        holds = (
            window is not None  # every item posted was already too old to keep: nothing to judge
            and window["items"] >= self.min_items
            and base["items"] >= self.min_items
            and window["share"] >= self.ratio * base["share"]
            and window["share"] - base["share"] >= self.min_increase
        )
        if holds and self._active is None:
            latest = summary["latest"]
            examples = [text for moment, text in self._texts if moment > latest - self.window][-EXAMPLES:]
            self._active = {
                "label": self.label,
                "raised_at": latest,
                "share": window["share"],
                "baseline_share": base["share"],
                "items": window["items"],
                "examples": examples,
                "resolved_at": None,
            }
            self._alerts.append(self._active)
            self._log(logging.WARNING, "raised", summary)
            return self._active, {**summary, "alerting": True}
        if not holds and self._active is not None:
            self._active["resolved_at"] = summary["latest"]
            self._log(logging.INFO, "resolved", summary)
            self._active = None
            summary = {**summary, "alerting": False}
        return None, summary

    def _log(self, level: int, what: str, summary: dict[str, Any]) -> None:
        """One line per alert raised or resolved: the history is in memory only, so after a
        restart the daemon's log is where an operator finds (greps for) past alerts."""
        window, base = summary["window"], summary["baseline"]
        log.log(
            level,
            "%s: alert %s: label %r share %.3f (%d of %d items in the %g s window) vs baseline %.3f"
            " (%d of %d in the %g s before), at item time %.0f",
            self.ctx.name,
            what,
            self.label,
            window["share"],
            window["matching"],
            window["items"],
            self.window,
            base["share"],
            base["matching"],
            base["items"],
            self.baseline,
            summary["latest"],  # epoch seconds, as the alert's raised_at: any finite time is accepted
        )


def _probability(prediction: dict[str, Any]) -> float | None:
    """The probability of the label a text got; None for one the model has none for (its "I
    don't know", ``out_of_scope``: every post holding such a text failed with a KeyError)."""
    chance = prediction["probabilities"].get(prediction["label"])
    return None if chance is None else float(chance)
