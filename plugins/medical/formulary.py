"""A hospital's own drugs for the allergy filter: a formulary file its profile names.

The filter (``safety.py``) reads a drug's name only to the ingredients it knows (``INGREDIENTS``,
``BRANDS``, the classes' members): any other drug is withheld from a patient with allergies. A
hospital whose drugs the shipped tables lack names them in a TOML file, not in the package's code::

    ingredients = ["linezolid", "tedizolid"]

    [brands]
    Zyvox = ["linezolid"]
    Hospamox = ["amoxicillin"]   # a class member: an allergy to penicillin rules it out

    [allergy_codes]              # allergies its records code without a display
    "rxnorm:723" = "amoxicillin"

and sets ``formulary = "our-formulary.toml"`` on the treatment model; the treatment api reads the
model's (docs/MEDICAL.md, "A hospital's own drugs"). The file adds to the shipped tables, never
takes from them: a brand they have keeps its ingredients besides the file's.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import attrs

import heirloom
from heirloom_plugins.code_systems import SYSTEMS, code_mistake, hidden_character, short_system
from heirloom_plugins.medical.safety import (
    ALLERGY_CODES,
    CLASSES,
    MAX_CODE_CHARS,
    NO_SUBSTANCE_WORDS,
    SHIPPED,
    Formulary,
    _forms,
    ingredients,
    normal_text,
    unreadable,
)

log = logging.getLogger("heirloom.medical")
#: The ingredients the shipped tables know: the classes' members, the brands' ingredients, ``INGREDIENTS``.
KNOWN_INGREDIENTS = frozenset(
    {member for members in CLASSES.values() for member in members}
    | {part for parts in SHIPPED.brands.values() for part in parts}
    | SHIPPED.ingredients
)
#: Letters a one-word brand name has at least (``Zy`` would be found inside other names' words).
BRAND_LETTERS = 3
#: Words drug names hold whatever their drug: no one-word brand may be one (each word of a name is
#: looked up as a brand).
_FORM_TEXT = """tablet tablets capsule capsules oral solution suspension syrup injection injectable cream ointment gel
    patch spray drops powder chewable extended release delayed film coated kit inhaler inhalation suppository lozenge
    topical vial prefilled syringe pen auto injector transdermal nasal ophthalmic otic elixir liquid dose unit pack
    day hour mg ml mcg meq actuat milligram milligrams gram grams microgram micrograms millilitre milliliter"""
NOT_BRANDS = NO_SUBSTANCE_WORDS | frozenset(_FORM_TEXT.split())
#: What a formulary file holds.
KEYS = {
    "ingredients": "a list of ingredient names",
    "brands": "a table of brand names, each = [its ingredients]",
    "allergy_codes": "a table of allergy codes, each = the substance it stands for",
}
#: An allergy's code as records carry it (docs/FHIR.md): ``system:code`` by a system's short name
#: (``rxnorm:723``, ``snomed:91936005``), or ``system|code`` by another system's URL or OID as written.
CODE_FORM = re.compile(r"[a-z][a-z0-9]*:[^\s|]+|[^\s|]*:[^\s|]*\|[^\s|]+")
#: A key the path of a problem writes bare (``brands.Zyvox``); others quoted (``brands."Pen X"``).
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
#: A name as the file gives it, with the key path of its problems: ``("ingredients[2]", "Linezolid")``.
Named = tuple[str, str]
#: An allergy code of the file, its substance as the filter reads names: ``(key path, code, substance)``.
Coded = tuple[str, str, str]


def formulary_field() -> Any:
    """The ``formulary`` setting of the treatment model and api: a formulary file (relative to the
    profile that sets it), checked where the profile is; unset, the shipped tables alone."""
    return heirloom.path_field(default=None, validator=_formulary_file)


def _formulary_file(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    """A file the filter can read its drugs with (a missing one is the path check's to report)."""
    if value is not None and Path(value).exists():
        try:
            read_formulary(value)
        except heirloom.HeirloomError as error:
            said = "\n".join(f"'{attribute.name}' file {line}" for line in str(error).splitlines())  # each (h402 F7)
            raise ValueError(said) from None


def read_formulary(path: str | None) -> Formulary:
    """The filter's tables: the shipped ones, with the formulary file at ``path`` added (one object
    per content: built once, whoever reads it). HeirloomError naming the file and the key in it of
    everything the filter cannot use, a line each (the first alone had a pharmacy fix one at a time)."""
    if path is None:
        return SHIPPED
    try:
        content = heirloom.read_regular(path)
    except OSError as error:
        raise heirloom.HeirloomError(f"{path}: cannot read it: {error.strerror or error}") from None
    digest = hashlib.sha256(content).hexdigest()
    if (built := _BUILT.get(digest)) is None:  # a 200,000-code file took seconds each of 3 reads a start (h402 F4)
        built = _BUILT[digest] = _build(path, content)
        while len(_BUILT) > 4:
            _BUILT.pop(next(iter(_BUILT)))
    tables, counts = built
    log.info(
        "formulary %s (sha256 %s): %d ingredient(s), %d brand(s), %d allergy code(s) added", path, digest[:12], *counts
    )
    return tables  # each read logs which list its answers are read with, for an audit


#: The tables of each formulary content read lately, by its sha256, with what it added.
_BUILT: dict[str, tuple[Formulary, tuple[int, int, int]]] = {}


def _build(path: str, content: bytes) -> tuple[Formulary, tuple[int, int, int]]:
    """The tables of a formulary file's ``content``, and how many ingredients, brands and codes it added."""
    try:
        data = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise heirloom.HeirloomError(f"{path}: not a TOML file: {error}") from None
    except RecursionError:  # arrays 3,000 deep: a plugin bug's message, naming no file
        raise heirloom.HeirloomError(f"{path}: nested too deep for a formulary (lists of names)") from None
    mistakes: list[str] = []
    extra, brands = _names(data, mistakes)
    codes = _codes(data.get("allergy_codes", {}), mistakes)
    if not extra and not brands and not codes and not mistakes:
        mistakes.append(
            "names no ingredient, no brand and no allergy code (set 'ingredients', 'brands' or 'allergy_codes', "
            "or unset 'formulary')"
        )
    _check_roles(extra, brands, mistakes)
    _check_codes(codes, extra, brands, mistakes)
    built = _built(
        frozenset(name for _, name in extra), _merged(brands), tuple(sorted((code, name) for _, code, name in codes))
    )
    _check_readable(extra, brands, built, mistakes)
    if mistakes:
        raise heirloom.HeirloomError("\n".join(f"{path}: {mistake}" for mistake in mistakes))
    return built, (len(extra), len(brands), len(codes))


def _names(data: dict[str, Any], mistakes: list[str]) -> tuple[list[Named], list[tuple[Named, list[Named]]]]:
    """The file's ingredients and its brands with theirs, normalised as the filter reads names;
    a mistake naming the key of each that is not a name (and it left out)."""
    for key in data:
        if key not in KEYS:
            known = ", ".join(f"{name!r} ({what})" for name, what in KEYS.items())
            mistakes.append(f"{_key(key)}: not a formulary key (it has {known})")
    extra = _listed("ingredients", data.get("ingredients", []), "ingredient", mistakes)
    table = data.get("brands", {})
    if not isinstance(table, dict):
        mistakes.append(f"brands: {KEYS['brands']}, not {_shown(table)}")
        table = {}
    brands = []
    for brand, parts in table.items():
        where = f"brands.{_key(brand)}"
        if parts == []:
            mistakes.append(
                f"{where}: a brand with no ingredients (a drug of it may be any drug: list what it is made of)"
            )
        elif (named := _name(where, brand, mistakes)) is not None:
            brands.append((named, _listed(where, parts, "ingredient", mistakes)))
    return extra, brands


def _listed(where: str, values: Any, what: str, mistakes: list[str]) -> list[Named]:
    """The names of a list of ``what`` names at key ``where``."""
    if not isinstance(values, list):
        mistakes.append(f"{where}: a list of {what} names, not {_shown(values)}")
        return []
    named = (_name(f"{where}[{index}]", value, mistakes) for index, value in enumerate(values))
    return [name for name in named if name is not None]


def _name(where: str, value: Any, mistakes: list[str]) -> Named | None:
    """One name, as the filter reads it (``normal_text``, spaces collapsed); None, and a mistake
    said, when it is none."""
    if not isinstance(value, str):
        mistakes.append(f"{where}: a name (a string), not {_shown(value)}")
    elif hidden := hidden_character(where, value, "write the name as it prints"):
        mistakes.append(hidden)  # a NUL, a line break, a bidi override: a name that maps nothing, or not as shown
    elif not (name := " ".join(normal_text(value).split())):
        mistakes.append(f"{where}: an empty name")
    else:
        return where, name
    return None


def _merged(brands: list[tuple[Named, list[Named]]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The file's brands and their ingredients, in order: the cache key of ``_built`` (a brand given
    twice is refused before, ``_check_roles``)."""
    return tuple(sorted((brand, tuple(sorted({name for _, name in parts}))) for (_, brand), parts in brands))


@functools.lru_cache(maxsize=8)
def _built(
    extra: frozenset[str], brands: tuple[tuple[str, tuple[str, ...]], ...], codes: tuple[tuple[str, str], ...] = ()
) -> Formulary:
    """The shipped tables with these ingredients, brands and allergy codes added: one object per
    content, so that the model and the api that read one file share it and the caches keyed on it."""
    merged = dict(SHIPPED.brands)
    for brand, parts in brands:
        merged[brand] = tuple(dict.fromkeys((*merged.get(brand, ()), *parts)))
    return Formulary(merged, SHIPPED.ingredients | extra, dict(codes))


def _codes(table: Any, mistakes: list[str]) -> list[Coded]:
    """The file's allergy codes and the substance each stands for (``normal_text``); a mistake naming
    the key of each code that is not one as records carry it, or that the shipped tables read already."""
    if not isinstance(table, dict):
        mistakes.append(f"allergy_codes: {KEYS['allergy_codes']}, not {_shown(table)}")
        return []
    found = []
    for code, value in table.items():
        where = f"allergy_codes.{_key(code)}"
        system, _, rest = code.partition(":")
        if len(code) > MAX_CODE_CHARS:
            mistakes.append(f"{where}: longer than {MAX_CODE_CHARS} characters: no code (the filter reads none such)")
        elif hidden := code_mistake(where, code):
            mistakes.append(hidden)  # a zero-width space: a code no record carries, the mapping dead
        elif (plain := unicodedata.normalize("NFKC", code)) != code:
            hint = f"records write it {plain!r}" if CODE_FORM.fullmatch(plain) else "such as 'rxnorm:723'"
            mistakes.append(  # full-width digits: records carry ASCII ones, and the key never matched
                f"{where}: {code!r} holds full-width or other compatibility characters, which no record's code "
                f"has ({hint}; docs/FHIR.md)"
            )
        elif short := _short_code(code):
            mistakes.append(
                f"{where}: not an allergy code as records carry it (the FHIR source names this system by its "
                f"short name: records write it {short!r}; docs/FHIR.md)"
            )
        elif not CODE_FORM.fullmatch(code):
            lower = f"{system.lower()}:{rest}"  # "RxNorm:723": records write the short name in lower case
            hint = f"records write it {lower!r}" if CODE_FORM.fullmatch(lower) else "such as 'rxnorm:723'"
            mistakes.append(f"{where}: not an allergy code as records carry it (system:code, {hint}; docs/FHIR.md)")
        elif "|" not in code and system not in SYSTEMS.values():  # "atc:J01XX08": no record carries it (h402 F3)
            mistakes.append(
                f"{where}: not an allergy code as records carry it: {system!r} is no short name the FHIR source writes "
                f"({', '.join(SYSTEMS.values())}); a record of another system carries its URL, 'URL|{rest}' "
                "(docs/FHIR.md)"
            )
        elif code in ALLERGY_CODES:
            mistakes.append(
                f"{where}: the shipped tables read this code already, as {ALLERGY_CODES[code]!r}: leave it out"
            )
        elif (named := _name(where, value, mistakes)) is not None:
            singular = _forms(named[1])[-1]  # "macrolides", "beta-lactams": the class, as a display's plural
            found.append((where, code, singular if named[1] not in CLASSES and singular in CLASSES else named[1]))
    return found


def _short_code(code: str) -> str | None:
    """The form records carry a ``URL|code`` or ``urn:oid:OID|code`` key in when the FHIR source names
    its system by a short name (``rxnorm:723``), else None."""
    system, bar, value = code.partition("|")
    if not bar:
        return None
    short = short_system(system)  # as the FHIR source names it
    return f"{short}:{value}" if short else None


def _check_codes(
    codes: list[Coded], extra: list[Named], brands: list[tuple[Named, list[Named]]], mistakes: list[str]
) -> None:
    """A mistake naming each allergy code whose substance is none the filter knows by that name: a
    class, an ingredient (the tables' or the file's) or a brand (the tables' or the file's). Any other
    name would read the allergy as one to a drug of that name, ruling nothing else out."""
    known = {*CLASSES, *KNOWN_INGREDIENTS, *SHIPPED.brands, *(name for _, name in extra), *(b for (_, b), _ in brands)}
    for where, _, name in codes:
        if name not in known:
            close = difflib.get_close_matches(name, known, 1, 0.85)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            mistakes.append(
                f"{where}: {name!r} is no substance the filter knows{hint}: give a class ('penicillin'), an "
                "ingredient ('amoxicillin', or one the file lists under 'ingredients') or a brand"
            )


def _check_readable(
    extra: list[Named], brands: list[tuple[Named, list[Named]]], built: Formulary, mistakes: list[str]
) -> None:
    """A mistake naming each name a drug's name cannot be read to with ``built`` (``unreadable``:
    digits alone, a dose form, another alphabet), and each brand a drug named by it is not read as."""
    for where, name in [*extra, *(named for brand, parts in brands for named in (brand, *parts))]:
        if why := unreadable(name, built):
            mistakes.append(f"{where}: a drug named {name!r} cannot be read with it ({why})")
    for (where, brand), parts in brands:
        if missing := sorted({name for _, name in parts} - ingredients(brand, built)):
            found = ", ".join(sorted(ingredients(brand, built)))
            mistakes.append(f"{where}: a drug named {brand!r} is read as {found}, without {', '.join(missing)}")


def _check_roles(extra: list[Named], brands: list[tuple[Named, list[Named]]], mistakes: list[str]) -> None:
    """A mistake naming each name that plays another role in the shipped tables than the file
    gives it, each of which let an allergen through: a brand named like a known ingredient or class
    (``Amoxicillin = ["linezolid"]``: amoxicillin offered to a penicillin allergy), an ingredient that
    is a known brand or another name of one (``Clavumox = ["Augmentin"]``: an ingredient of no class),
    one the filter knows nowhere (``["co-amoxiclav-local"]``, ``["amoxicilin"]``), a word of every
    drug's name as a brand (``Tablet``: a linezolid allergy blocked every tablet)."""
    listed = {name for _, name in extra}
    for where, name in extra:
        if name in CLASSES or (name in SHIPPED.brands and name not in KNOWN_INGREDIENTS):
            mistakes.append(f"{where}: {name!r} is not an ingredient: the filter knows it as {_role(name)}")
        elif all(word in NOT_BRANDS for word in name.split()):  # NOT_BRANDS: no substance words and dose forms
            mistakes.append(f"{where}: {name!r} names no substance alone (a salt, a form, a generic word)")
        elif name not in KNOWN_INGREDIENTS and (close := difflib.get_close_matches(name, KNOWN_INGREDIENTS, 1, 0.85)):
            said = f"{name!r} is spelt close to {close[0]!r}, an ingredient the filter knows"
            mistakes.append(f"{where}: {said}: write it so, or it is read as another drug than {close[0]!r}")
    seen: dict[str, str] = {}
    for (where, brand), parts in brands:
        if (first := seen.setdefault(brand, where)) != where:  # "Zyvox" and "ZYVOX": one brand, its lists merged
            mistakes.append(f"{where}: the brand {brand!r} again ({first}): give each brand once")
        elif brand in CLASSES or brand in KNOWN_INGREDIENTS:
            said = f"{brand!r} is {_role(brand)} the filter knows, not a brand"
            mistakes.append(f"{where}: {said}: a drug named by it would be read as {', '.join(n for _, n in parts)}")
        elif " " not in brand and (len(brand) < BRAND_LETTERS or brand in NOT_BRANDS):
            mistakes.append(f"{where}: {brand!r} is no brand name: drug names hold it whatever their drug")
        for part_where, part in parts:
            if part in SHIPPED.brands and part not in KNOWN_INGREDIENTS:
                mistakes.append(f"{part_where}: {part!r} is {_role(part)}: list its ingredients instead")
            elif part not in KNOWN_INGREDIENTS and part not in listed:
                close = difflib.get_close_matches(part, KNOWN_INGREDIENTS, 1, 0.85)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                mistakes.append(
                    f"{part_where}: {part!r} is no ingredient the filter knows{hint}: list it under 'ingredients' "
                    "too if it is one (a brand's ingredients decide which allergies rule it out)"
                )


def _role(name: str) -> str:
    """What the shipped tables know ``name`` as."""
    if name in CLASSES:
        return "a drug class"
    if name in KNOWN_INGREDIENTS:
        return "an ingredient"
    return f"a brand (or another name) of {', '.join(SHIPPED.brands[name])}"


def _key(key: str) -> str:
    """A TOML key as a key path writes it."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _shown(value: Any) -> str:
    """A value of the wrong type, for a message: its type and the start of it."""
    return f"{type(value).__name__} {value!r:.60}"
