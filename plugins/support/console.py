"""The support console, for ``heirloom gateway``: ask a question as a customer would and
see what the ``support`` api decides: the intent and its probability, the ranked FAQ
answers with their scores, and whether (and why) the question goes to a person.

Asking goes through ``<api>.answer``, exactly as a customer's message does: a question
that is handed off is queued in the api's handoff log, and the page shows its id.
"""

from __future__ import annotations

from html import escape
from typing import Any

import heirloom
from heirloom_plugins.support.api import HANDOFF_WHEN, stated_policy

#: What each handoff reason of ``<api>.answer`` means, in words for the page.
REASONS = {
    "out_of_scope": "the intent model says the question is out of scope",
    "low_answer_confidence": "the best FAQ answer is below the retriever's confidence threshold",
}


def _form(text: str, limit: int | None = None) -> str:
    """The question box, holding the question as asked (escaped; a form field's text is isolated from the
    page's, so a bidi override in it, ``\u202e``, turns only itself), in its own direction (``dir='auto'``: a
    question in Arabic or Hebrew reads right to left). The page shows no other customer text. ``limit``: the
    route's ``maxLength``, so the browser stops a longer question where it is typed."""
    return (
        "<form method='get' class='ask'><label>Question <input name='text' dir='auto' value='"
        + escape(text)
        + "' size='70' placeholder='what a customer would write'"
        + (f" maxlength='{int(limit)}'" if limit else "")
        + " autofocus></label> <button>Ask</button></form>"
    )


def _intent(reply: dict[str, Any]) -> str:
    probability = f"<span class='probability'>{reply['confidence']:.4f}</span>"
    if reply["intent"] is None:
        return (
            "<h2>Intent</h2><p class='intent'><span class='intent'>out of scope</span> "
            f"(the likeliest known intent had probability {probability})</p>"
        )
    label = f"<span class='intent'>{escape(reply['intent'])}</span>"
    return f"<h2>Intent</h2><p class='intent'>{label} with probability {probability}</p>"


def _answers(answers: list[dict[str, Any]]) -> str:
    if not answers:
        return "<h2>Answers</h2><p class='answers none'>No FAQ entry matches.</p>"
    rows = "".join(
        f"<tr data-id='{escape(str(answer['id']))}'><td>{rank}</td><td>{escape(str(answer['question']))}</td>"
        f"<td>{escape(str(answer['answer']))}</td><td class='number score'>{answer['score']:.4f}</td></tr>"
        for rank, answer in enumerate(answers, start=1)
    )
    return (
        "<h2>Answers</h2><table class='answers'><thead><tr><th>#</th><th>question</th><th>answer</th>"
        f"<th>score</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _kept(reply: dict[str, Any]) -> str:
    """Why a question was not handed off, from what the reply says of it: the sentence a policy's rule makes true
    (an out-of-scope question with a confident answer stays only under ``both``, an unsure answer to an in-scope
    one under ``both`` and ``out_of_scope``)."""
    in_scope, confident = reply["intent"] is not None, reply["answer_confident"]
    if in_scope and confident:
        return "the intent is in scope and the best FAQ answer is confident enough"
    if in_scope:
        return (
            "the intent is in scope; the best FAQ answer is below the retriever's confidence threshold, "
            "which alone is no reason to hand off here"
        )
    if confident:
        return "the intent model says the question is out of scope, but the best FAQ answer is confident enough"
    return "neither the intent nor the answer is a reason to hand off under this api's policy"


def _handoff(reply: dict[str, Any], policy: str | None) -> str:
    rule = (
        f"<p class='policy' data-policy='{policy}'>This api hands off {HANDOFF_WHEN[policy]} "
        f'(<code>handoff = "{policy}"</code>).</p>'
        if policy
        else ""
    )
    if not reply["handoff"]:
        return f"<h2>Handoff</h2><p class='handoff' data-handoff='false'>Answered directly: {_kept(reply)}.</p>{rule}"
    reasons = "".join(
        f"<li data-reason='{escape(reason)}'>{escape(REASONS.get(reason, reason))}</li>"
        for reason in reply.get("handoff_reasons", [])
    )
    return (
        "<h2>Handoff</h2><p class='handoff' data-handoff='true'>Handed off to a person, queued as "
        f"<code class='handoff-id'>{escape(str(reply.get('handoff_id')))}</code>, because:</p>"
        f"<ul class='reasons'>{reasons}</ul>{rule}"
    )


def render(request: heirloom.ConsoleRequest) -> str:
    text = request.query.get("text", "")
    route = request.routes.get(f"{request.api}.answer") or {}
    limit = ((route.get("input") or {}).get("properties") or {}).get("text", {}).get("maxLength")
    form = _form(text, limit)
    if not text.strip():
        return form + "<p>Ask a question to see the intent, the FAQ answers and the handoff decision.</p>"
    try:
        reply = request.call("answer", {"text": text})
    except heirloom.RemoteError as error:
        return form + f"<p class='error'>{escape(error.code)}: {escape(error.message)}</p>"
    return (
        form
        + f"<p>Served by <code class='version'>{escape(str(reply.get('version')))}</code>.</p>"
        + _intent(reply)
        + _answers(reply["answers"])
        + _handoff(reply, stated_policy(str(route.get("description", ""))))
    )


CONSOLE = heirloom.Console(
    title="Support",
    routes=("answer", "handoffs", "resolve"),
    render=render,
    description="Ask a question: the intent, the ranked FAQ answers and the handoff decision.",
)
