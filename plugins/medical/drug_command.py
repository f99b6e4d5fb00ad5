"""``heirloom medical drug``: how the allergy filter reads drug names and allergies.

A pharmacy writing a formulary file (docs/MEDICAL.md) could only see what the filter made of a
drug by serving a profile and asking for a patient's treatment: an answer says which allergy
withheld a drug, not which ingredient linked the two, nor what a name was read to. This
command says both, with the shipped tables or a formulary file, starting nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

import heirloom
from heirloom.options import a_path, echo
from heirloom_plugins.medical.caution import FIELD, quoted, why_unselected
from heirloom_plugins.medical.formulary import CODE_FORM, read_formulary
from heirloom_plugins.medical.safety import Formulary, allergy_substances, links, read_drug, unread


def recorded(allergy: str) -> tuple[str | None, str | None]:
    """An ``--allergy`` as a record carries it, ``(code, display)``: a code (``CODE_FORM``:
    ``rxnorm:723``, ``snomed:91936005``) without a display, else a display without a code."""
    return (allergy, None) if CODE_FORM.fullmatch(allergy) else (None, allergy)


def reading(drugs: tuple[str, ...], allergies: tuple[str, ...], tables: Formulary) -> dict[str, Any]:
    """What the filter reads each drug to, and which of ``allergies`` rule it out through which ingredient."""
    read = {drug: read_drug(drug, tables) for drug in drugs}
    ruling = {allergy: allergy_substances(*recorded(allergy), tables) for allergy in allergies}
    known = tuple(tuple(sorted(parts)) for parts, _ in read.values())
    not_read = unread(tuple(recorded(allergy) for allergy in allergies), known, tables)
    return {
        "drugs": [
            {
                "name": drug,
                "ingredients": sorted(parts),
                "unreadable": why,
                "ruled_out_by": {
                    allergy: [list(pair) for pair in found]
                    for allergy, substances in ruling.items()
                    if (found := links(parts, substances))
                },
            }
            for drug, (parts, why) in read.items()
        ],
        "allergies": [
            {
                "name": allergy,
                "code": recorded(allergy)[0] is not None,
                "substances": sorted(substances),
                "read": allergy not in not_read,
            }
            for allergy, substances in ruling.items()
        ],
        FIELD: why_unselected(not_read),  # as the api's answer for a patient with these allergies says
    }


def _text(found: dict[str, Any], allergies: tuple[str, ...]) -> list[str]:
    lines = []
    for drug in found["drugs"]:
        lines.append(drug["name"] or "(an empty name)")
        lines.append(f"  read as: {', '.join(drug['ingredients']) or 'nothing'}")
        if drug["unreadable"]:
            lines.append(f"  not checked against allergies: {drug['unreadable']}: withheld from every patient with one")
            continue
        for allergy in allergies:
            pairs = drug["ruled_out_by"].get(allergy)
            said = "; ".join(i if i == s else f"{i} (as {s})" for i, s in pairs or ())
            rules = f"rules it out through {said}" if pairs else "does not rule it out"
            lines.append(f"  {quoted(allergy)!r}: {rules}")  # quoted as an answer quotes it, once per drug
    for allergy in found["allergies"]:
        if not allergy["read"]:
            lines.append(f"allergy {quoted(allergy['name'])!r}: not read in full: listed for a person to check")
    if found[FIELD]:
        lines.append(f"a patient with these allergies: {found[FIELD]}")
    return lines


@click.group("medical")
def medical_group() -> None:
    """The medical plugin's tools (docs/MEDICAL.md)."""


@medical_group.command("drug")
@click.argument("drugs", nargs=-1, required=True)
@click.option(
    "--allergy",
    "allergies",
    multiple=True,
    metavar="TEXT",
    help="An allergy as a record names it ('Allergy to penicillin'), or its code alone as a record carries "
    "it ('rxnorm:723', 'snomed:91936005': system:code); repeat for several.",
)
@click.option(
    "--formulary",
    type=a_path(exists=True, dir_okay=False),
    help="A formulary file (the value of models.treatment.formulary); default: the shipped tables alone.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reading as JSON.")
def drug_command(drugs: tuple[str, ...], allergies: tuple[str, ...], formulary: Path | None, as_json: bool) -> None:
    """How the allergy filter reads each of DRUGS (names as prescriptions write them).

    For each drug: the ingredients its name is read to, or why it cannot be read (then it is
    withheld from every patient with an allergy); for each --allergy, whether it rules the
    drug out and through which ingredient (and the allergy's substance it matched). An --allergy
    written as a code (system:code) is read as a record's allergy coded so without a display: by
    the shipped codes, or the formulary's [allergy_codes]. Allergies the filter cannot read in
    full are named: the api lists those for a person to check, and selects no drug for such a patient.

    Example: heirloom medical drug "Zyvox 600 MG" "Hospamox 500 MG Oral Capsule"
    --allergy "Allergy to penicillin" --formulary our-formulary.toml
    """
    if any(not allergy.strip() for allergy in allergies):  # it was said read, and withheld every drug (h421 F2)
        raise click.BadParameter("an allergy is a name or a code, not blank", param_hint="'--allergy'")
    allergies = tuple(dict.fromkeys(allergies))  # one given twice was said twice under each drug (h421 F3)
    try:
        tables = read_formulary(None if formulary is None else str(formulary))
    except heirloom.HeirloomError as exc:  # input it cannot work with: exit 2, as profile check refuses the file
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    found = reading(drugs, allergies, tables)
    echo(json.dumps(found, indent=2) if as_json else "\n".join(_text(found, allergies)))
