"""Full validation of resources with ``fhir.resources`` (pydantic models), for ``validate = true``.

fhir.resources 8 ships R5, R4B and STU3 models but not R4; R4B is R4 plus a few new
resource types, and validates R4 data such as Synthea's unchanged. The R4-only types
(``MedicinalProduct*``, ``Substance*`` details, ``*EvidenceSynthesis``) have no R4B
model and are reported as invalid. Imported only when asked for: it costs ~0.4 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from heirloom_plugins.fhir.parse import found

#: Validation errors quoted per resource; the rest are counted.
SHOWN = 3


def checker() -> Callable[[dict[str, Any]], str | None]:
    """A function returning why a resource is invalid (None when valid)."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    def check(resource: dict[str, Any]) -> str | None:
        try:
            model = get_fhir_model_class(resource["resourceType"])
        except ValueError:
            return f"no FHIR R4B model for resourceType {resource['resourceType']!r}"
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            errors = exc.errors()
            said = (f"{'.'.join(map(str, e['loc'])) or '(resource)'}: {_said(e, resource)}" for e in errors[:SHOWN])
            shown = "; ".join(said)
            more = f" (+{len(errors) - SHOWN} more)" if len(errors) > SHOWN else ""
            return f"invalid: {shown}{more}"
        return None

    return check


#: Pydantic's words when a value is no JSON object where one goes (a string it first tries as JSON).
NOT_AN_OBJECT = ("Invalid JSON", "Input should be a valid dictionary")


def _said(error: dict[str, Any], resource: Any) -> str:
    """Pydantic's message, but for a value where an object goes: "code: Invalid JSON: expected
    value at line 1 column 1" said nothing of what ``code`` should be. The value is quoted as the
    resource has it (pydantic quotes the string ``"38341003"`` as the number it parsed)."""
    if not error["msg"].startswith(NOT_AN_OBJECT):
        return error["msg"]
    value = resource
    for part in error["loc"]:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = error.get("input")
            break
    return f"expected a JSON object, got {found(value)}"
