"""References to stored versions: ``project/model``, ``project/model@7``, ``project/model@production``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from heirloom.core.errors import HeirloomError, RefError
from heirloom.core.settings import ALIAS_PATTERN, NAME_PATTERN
from heirloom.suggest import did_you_mean

if TYPE_CHECKING:
    from heirloom.store.artifacts import Artifact, ArtifactStore

NAME = NAME_PATTERN
VERSION = re.compile(r"[0-9]+")
ALIAS = ALIAS_PATTERN  # as long as a name at most (5,000 characters were listed)
#: What a reference looks like, for the error refusing one.
FORM = "project/model, project/model@VERSION or project/model@ALIAS"
#: The selector meaning "no selector": the newest version.
LATEST = "latest"


class StoreMissing(HeirloomError):
    """No store where ``ArtifactStore(root, create=False)`` looked, and nothing was written there."""


def check_name(kind: str, name: str) -> str:
    if not NAME.fullmatch(name):
        rule = "use 1-100 ASCII letters, digits, '.', '_' and '-' (not a leading '.')"
        raise RefError(f"invalid {kind} name {name!r:.120}: {rule}")
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias) or alias.lower() == LATEST:
        raise RefError(
            f"invalid alias {alias!r:.120}: an ASCII letter, then up to 99 ASCII letters, digits, '-' or '_' "
            f"('{LATEST}': reserved)"
        )
    return alias


def one_typo(written: str, meant: str) -> bool:
    """Whether ``written`` is ``meant`` with one letter left out, added, changed or two swapped,
    both at least 5 letters long, and not ``meant`` with something added before or after it (``sentiment2``
    is another model); ``meant`` without its first or last letter is one (``triag``: checker h444 F2)."""
    if min(len(written), len(meant)) < 5 or written.startswith(meant) or written.endswith(meant):
        return False
    if abs(len(written) - len(meant)) > 1:
        return False
    start = len(os.path.commonprefix([written, meant]))  # noqa: RUF071 - characters, not paths
    rest_w, rest_m = written[start:], meant[start:]
    swapped = len(rest_w) >= 2 and rest_w[:2] == rest_m[1::-1] and rest_w[2:] == rest_m[2:]
    return rest_w[1:] == rest_m[1:] or rest_w[1:] == rest_m or rest_w == rest_m[1:] or swapped


def typo_of(name: str, choices: Iterable[str]) -> str:
    """``did_you_mean`` over the ``choices`` one typo from ``name`` ("" if none): a name further
    off (``medical/diagnosis`` beside ``medical-small/diagnosis``) may be one not trained or
    promoted yet, which a check must not refuse. One in another case only is one too (``helpdesk2/Triage``: v37 F4)."""
    folded = name.casefold()  # and in any case: "PRODUCTON" beside production (v24 F5)
    near = [c for c in choices if (c != name and c.casefold() == folded) or one_typo(folded, c.casefold())]
    return did_you_mean(name, near)


@attrs.frozen
class Ref:
    """``project/model@selector``: a version number, an alias, or None for the latest."""

    project: str
    model: str
    selector: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        path, at, selector = text.partition("@")
        project, slash, model = path.partition("/")
        if not (slash and NAME.fullmatch(project) and NAME.fullmatch(model)) or (at and not selector):
            said = f"invalid artifact reference {text!r:.120}"
            if os.path.isdir(text):  # `models verify /backup/store`: a store's folder is an option, not a ref
                raise RefError(f"{said}: it is a folder; to check a store folder, pass it as --store (a ref: {FORM})")
            if not slash or (at and not selector):
                raise RefError(f"{said}: expected {FORM}")
            try:  # the form is right: name the part that breaks the rule
                check_name("project", project)
                check_name("model", model)
            except RefError as exc:
                raise RefError(f"{said}: {exc}") from None
        if selector == LATEST:
            selector = ""
        elif selector and not VERSION.fullmatch(selector):
            check_alias(selector)
        return cls(project, model, selector or None)

    @property
    def version(self) -> int | None:
        """The version number the selector names, if it is one."""
        return int(self.selector) if self.selector and VERSION.fullmatch(self.selector) else None

    def __str__(self) -> str:
        return f"{self.project}/{self.model}" + (f"@{self.selector}" if self.selector else "")


def as_ref(ref: str | Ref) -> Ref:
    return ref if isinstance(ref, Ref) else Ref.parse(ref)


def spans(numbers: list[int]) -> str:
    """``1-3, 7``: a readable list of sorted version numbers."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def refuse_misspelt_alias(store: ArtifactStore, target: Artifact, alias: str) -> None:
    """RefError when ``alias``, new to ``target``'s model and to the store, looks like a
    misspelling of an alias the store has: moving a new alias would leave the intended one
    where it was. A name that only adds to one (``eu-prod``, ``staging2``) is no misspelling."""
    with store.index.reading() as tx:  # the names alone: not every version of a large store
        known = tx.alias_names()
    if check_alias(alias) in known:  # an invalid one first: --new-alias could not create it either
        return
    close = [name for name in known if name.lower() == alias.lower() or one_typo(alias, name)]
    if close:
        raise RefError(
            f"{target.project}/{target.model} has no alias {alias!r}; did you mean {close[0]!r}? "
            f"(--new-alias creates {alias!r})"
        )
