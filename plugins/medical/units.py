"""Observation values on one scale per quantity.

One hospital records a temperature in °F and another in °C, a weight in lb or kg, a glucose
in mg/dL or mmol/L. Binned as they come, 98.6 °F and 39.2 °C would fall in the same quantile
bin. ``canonical`` converts a value to one unit per dimension where the conversion is
unambiguous (UCUM codes and the usual printed spellings); a unit it does not know is kept as
written, and the vocabulary leaves out values of a code in a unit other than the code's
(``features.py``).
"""

from __future__ import annotations

from collections.abc import Callable

Convert = Callable[[float], float]


def _times(factor: float) -> Convert:
    return lambda value: value * factor


def _from_fahrenheit(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


#: Unit spelling (lower case) -> the canonical unit of its dimension and the conversion to it.
UNITS: dict[str, tuple[str, Convert]] = {
    **{spelling: ("Cel", float) for spelling in ("cel", "°c", "degc", "℃")},
    **{spelling: ("Cel", _from_fahrenheit) for spelling in ("[degf]", "degf", "°f", "℉")},
    **{spelling: ("kg", _times(1.0)) for spelling in ("kg", "kilogram", "kilograms")},
    "g": ("kg", _times(0.001)),
    **{spelling: ("kg", _times(0.45359237)) for spelling in ("[lb_av]", "lb", "lbs", "pound", "pounds")},
    **{spelling: ("kg", _times(0.028349523125)) for spelling in ("[oz_av]", "oz", "ounce", "ounces")},
    "cm": ("cm", _times(1.0)),
    "m": ("cm", _times(100.0)),
    "mm": ("cm", _times(0.1)),
    **{spelling: ("cm", _times(2.54)) for spelling in ("[in_i]", "in", "inch", "inches")},
}
#: LOINC codes of glucose mass concentrations (mg/dL) and their molar twins (mmol/L): the
#: analyte is known, so mmol/L converts with glucose's molar mass (180.16 g/mol).
GLUCOSE = frozenset(
    f"loinc:{code}" for code in ("2339-0", "2345-7", "2341-6", "1558-6", "41653-7", "15074-8", "14749-6", "14771-0")
)
GLUCOSE_UNITS: dict[str, tuple[str, Convert]] = {
    "mg/dl": ("mg/dL", float),
    "mmol/l": ("mg/dL", _times(18.016)),
    "mM": ("mg/dL", _times(18.016)),  # millimolar, as written (below)
}
#: Spellings whose case tells UCUM units apart (m metre, M molar; mm millimetre, mM
#: millimolar; g gram, G gauss): matched as written, never lower-cased (a glucose in mM was
#: read as millimetres).
CASE_SENSITIVE = frozenset({"m", "mm", "g"})


def canonical(code: str | None, value: float, unit: str | None) -> tuple[float, str | None]:
    """``value`` in the canonical unit of its dimension, or as recorded when its unit is not one
    that converts unambiguously (a unit is no dimension without a known analyte: mmol/L)."""
    if unit is None:
        return value, None
    written = "".join(unit.split())  # "° F" is "°F"
    key = written.lower()
    if key in CASE_SENSITIVE and written != key:
        key = written
    found = (GLUCOSE_UNITS.get(key) if code in GLUCOSE else None) or UNITS.get(key)
    if found is None:
        return value, unit
    target, convert = found
    return convert(value), target
