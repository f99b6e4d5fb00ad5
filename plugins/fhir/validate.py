"""Full validation of resources with ``fhir.resources`` (pydantic models), for ``validate = true``.

fhir.resources 8 ships R5, R4B and STU3 models but not R4; R4B is R4 plus a few new
resource types, and validates R4 data such as Synthea's unchanged. The R4-only types
(``MedicinalProduct*``, ``Substance*`` details, ``*EvidenceSynthesis``) have no R4B
model and are reported as invalid. Imported only when asked for: it costs ~0.4 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
            shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(resource)'}: {e['msg']}" for e in errors[:SHOWN])
            more = f" (+{len(errors) - SHOWN} more)" if len(errors) > SHOWN else ""
            return f"invalid: {shown}{more}"
        return None

    return check
