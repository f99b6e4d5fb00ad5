"""Lean reading of FHIR R4 JSON: bundle files and NDJSON bulk-export files.

This is the fast path: stdlib ``json`` plus the structural checks the patient records
rely on (a known ``resourceType``, the required fields of the resources we read).
Full schema validation is ``validate.py``'s job, on request: it is ~8x slower.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs

import heirloom

BUNDLE_SUFFIXES = (".json",)
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")
COMPRESSED = "compressed: FHIR files are read uncompressed (gunzip it, or the tool that made it)"
#: The first bytes of gzip, bzip2, xz, zip and zstd files (no JSON text starts so).
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04", b"(\xb5/\xfd")
#: Bundle types that carry resources to read (history and responses carry outcomes).
BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset", "document")

#: Every resource type of FHIR R4 (4.0.1); anything else is a wrong resourceType.
RESOURCE_TYPES = frozenset(
    """
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic
    Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry
    ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication
    CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage
    CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric
    DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
    Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable
    ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse
    HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation
    ImplementationGuide InsurancePlan Invoice Library Linkage List Location Measure MeasureReport Media Medication
    MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement
    MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged
    MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition MessageHeader
    MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition
    OperationOutcome Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation
    Person PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse
    RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject
    RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
    StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein
    SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
    TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
    """.split()  # noqa: SIM905 - 145 names read better as text
)

#: Fields the records need, from the R4 cardinalities (``x[x]`` is any choice of type).
REQUIRED: dict[str, tuple[str, ...]] = {
    "Encounter": ("status", "class"),
    "Condition": ("subject",),
    "Observation": ("status", "code"),
    "MedicationRequest": ("status", "intent", "medication[x]", "subject"),
    "MedicationStatement": ("status", "medication[x]", "subject"),
    "Procedure": ("status", "subject"),
    "Immunization": ("status", "vaccineCode", "patient", "occurrence[x]"),
    "AllergyIntolerance": ("patient",),
    "DocumentReference": ("status", "content"),
}
#: The Reference fields the records read (the patient, the visit, the drug) in the resources of
#: ``REQUIRED``: a malformed one would silently drop the resource from its record or its link.
READ_REFERENCES = ("subject", "patient", "encounter", "medicationReference")
#: JSON's name for each type ``json.loads`` gives (null is None).
JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


log = logging.getLogger("heirloom.fhir")


class FhirDataError(heirloom.HeirloomError):
    """Bad input, naming the file and, when it is one resource, which (id or position)."""

    def __init__(self, file: Path, where: str | None, message: str):
        self.file = file
        self.where = where
        super().__init__(heirloom.shortened(f"{file}: {where}: {message}" if where else f"{file}: {message}"))


@attrs.frozen
class Entry:
    """One resource read from a file, or the reason it could not be read.

    ``where`` is its position (``entry[3]``, ``line 4``); ``offset`` is the byte offset
    of an NDJSON line, so the resource can be read again without holding it.
    """

    resource: dict[str, Any] | None
    where: str
    full_url: str | None = None
    offset: int | None = None
    error: str | None = None

    def label(self) -> str:
        """``Observation/abc (line 4)``: the resource by id, else by position."""
        resource = self.resource if isinstance(self.resource, dict) else {}
        kind, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(kind, str) and isinstance(rid, str) and rid:
            return f"{cut(kind)}/{cut(rid)} ({self.where})"
        return f"{cut(kind)} at {self.where}" if isinstance(kind, str) else self.where


def cut(text: str, limit: int = 80) -> str:
    """``text`` as a message quotes it: a 50 MB id is not printed whole, but its length is."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def discover(root: Path) -> list[Path]:
    """The bundle and NDJSON files under ``root`` (or ``root`` itself), compressed ones without a
    decompressed copy included (for a pass to refuse by name, not to skip unseen), in a stable order."""
    if root.is_file():
        return [root]
    found = (p for p in _files_under(root) if _fhir_name(p))  # a broken link too: a pass says it (file_size)
    return sorted((p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts)), key=str)


def holds_fhir_files(folder: Path) -> bool:
    """Whether ``discover`` would find a file under ``folder``, stopping at the first (it lists and sorts every
    one: ``profile check`` asked it only that)."""
    return any(_fhir_name(path) for path in _files_under(folder))


def _files_under(root: Path) -> Iterator[Path]:
    """Every file under ``root`` but hidden ones, a symlinked folder followed (``Path.rglob`` did
    not: a link to a folder of exports read as "no FHIR files in it"), each real folder once (a
    link loop ends). Hidden folders are never entered: a hidden link walked first took the real
    folder's turn, and its files were then dropped as hidden."""
    seen: set[str] = set()
    for folder, folders, files in os.walk(root, followlinks=True):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        if (real := os.path.realpath(folder)) in seen:
            folders.clear()
            continue
        seen.add(real)
        yield from (Path(folder, name) for name in files if not name.startswith("."))


def _fhir_name(path: Path) -> bool:
    """A bundle or NDJSON file's name; a compressed one's too, unless it was decompressed beside it."""
    if is_compressed(path):
        path = path.with_suffix("")
        if path.is_file():
            return False
    return path.suffix.lower() in BUNDLE_SUFFIXES + NDJSON_SUFFIXES


def is_compressed(path: Path, sniff: bool = False) -> bool:
    """``Patient.ndjson.gz`` and the like by name, and with ``sniff`` by content too: bulk
    exports often come so; the reader needs plain files (an NDJSON set is read back by byte
    offset). A bundle's content is checked as it is read (:func:`read_bundle`)."""
    named = path.suffix.lower() in COMPRESSED_SUFFIXES
    if named or not sniff:
        return named
    try:
        with path.open("rb") as handle:
            return handle.read(6).startswith(COMPRESSED_MAGIC)
    except OSError:  # unreadable: the reading says so
        return False


def file_size(path: Path) -> int:
    """The size of the FHIR file ``path``, checked before it is opened; FhirDataError naming it when it
    cannot be read: a link to nothing (a share not mounted), a file gone since the folder was listed,
    one the system refuses, or no plain file (a FIFO would hang the pass). Passed over, its patients
    were lost without a word."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise unreadable(path, exc) from None
    if (kind := heirloom.irregular(path)) is not None:
        raise FhirDataError(path, None, kind)
    return size


def unreadable(path: Path, error: OSError, where: str | None = None) -> FhirDataError:
    """The fault of a file the system cannot read (``cannot read: No such file or directory``), naming
    the link's target when it is a link: a file error like a malformed one, never a traceback."""
    reason = error.strerror or str(error)
    with contextlib.suppress(OSError):  # no link: nothing to add
        reason += f" (a link to {os.readlink(path)})"
    return FhirDataError(path, where, f"cannot read: {reason}")


def open_file(path: Path) -> BinaryIO:
    """``path`` (checked by ``file_size`` when listed) open for binary reading; FhirDataError naming it when
    it cannot be."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise unreadable(path, exc) from None


def is_ndjson(path: Path) -> bool:
    return path.suffix.lower() in NDJSON_SUFFIXES


def problem(resource: Any) -> str | None:
    """Why ``resource`` cannot be used (wrong type, missing required field, malformed Reference
    the records read), or None."""
    if not isinstance(resource, dict):
        return f"expected a JSON object, got {JSON_TYPES.get(type(resource), 'null')}"
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        return "missing resourceType" if kind is None else f"resourceType must be a string, got {kind!r}"
    if kind not in RESOURCE_TYPES:
        close = difflib.get_close_matches(kind, RESOURCE_TYPES, n=1)
        return f"unknown resourceType {kind!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    if "id" in resource and (not isinstance(resource["id"], str) or not resource["id"]):
        return f"id must be a non-empty string, got {found(resource['id'])}"
    missing = [name for name in REQUIRED.get(kind, ()) if not _present(resource, name)]
    if missing == ["medication[x]"] and "medication" in resource:  # said as R5's Encounter.class is (h450 F1)
        return "medication is FHIR R5's shape; this reader takes R4's medicationCodeableConcept or medicationReference"
    if missing:
        return f"missing required field(s): {', '.join(missing)}"
    return _reference_problem(resource) if kind in REQUIRED else None


def found(value: Any) -> str:
    """What a JSON value is, for messages: ``a number: 5``, ``a string: "Patient/p1"``, ``null``."""
    if value is None:
        return "null"
    text = json.dumps(value)
    return f"{JSON_TYPES[type(value)]}: {text if len(text) <= 40 else text[:40] + '...'}"


def _reference_problem(resource: dict[str, Any]) -> str | None:
    """Why a Reference the records read is malformed (not an object, or its ``reference`` not a
    string), or None: read as absent, it would leave the resource unassigned without a word."""
    for name in READ_REFERENCES:
        holder = resource.get(name)
        if holder is not None and not isinstance(holder, dict):
            return f'{name}: expected a Reference object ({{"reference": "Type/id"}}), got {found(holder)}'
        ref = holder.get("reference") if holder is not None else None
        if ref is not None and not isinstance(ref, str):
            return f'{name}.reference: expected a string ("Type/id", "urn:uuid:..."), got {found(ref)}'
    return None


def _present(resource: dict[str, Any], name: str) -> bool:
    if name.endswith("[x]"):
        stem = name[:-3]
        return any(k.startswith(stem) and k[len(stem) : len(stem) + 1].isupper() for k in resource)
    return resource.get(name) not in (None, "", [], {})


#: ``\ud800``-``\udfff`` escaped in JSON text: a lone one decodes to a string no encoder takes.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan: only a finite value passes
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        raise ValueError(f"the number {shown} is beyond a 64-bit float (it would read as infinity)")
    return value


def _int64(text: str) -> int | float:
    """An integer, or (past 64 bits, which msgpack replies cannot hold) the float a JavaScript
    reader would see."""
    value = int(text)
    return value if -(1 << 63) <= value < 1 << 64 else _finite_float(text)


def decode_json(data: bytes) -> Any:
    """Strict JSON: NaN/Infinity refused (strict parsers downstream reject them), a number too
    large for a float too, a string escaping half a UTF-16 pair (not text: no reply or JSON
    output could carry it), and nesting too deep for the parser is a ValueError, not a
    RecursionError that ends the whole pass."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int64)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    if SURROGATE_ESCAPE.search(data):  # rare: only then is every string looked at
        _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    if (bad := heirloom.lone_surrogate(value)) is not None:
        raise ValueError(f"the string {bad[:40]!r} escapes half a UTF-16 pair (\\ud800-\\udfff): not text")


def read_bundle(path: Path) -> list[Entry]:
    """The entries of one Bundle file; raises FhirDataError if the file is not one, or cannot be read."""
    try:
        data = heirloom.read_regular(path)
    except OSError as exc:
        raise unreadable(path, exc) from None
    if data.startswith(COMPRESSED_MAGIC):
        raise FhirDataError(path, None, COMPRESSED)
    if not data.strip():
        raise FhirDataError(path, None, "an empty file: a .json file holds one Bundle")
    try:
        bundle = decode_json(data)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        hint = "; one resource per line is NDJSON: name the file .ndjson" if str(exc).startswith("Extra data") else ""
        raise FhirDataError(path, None, f"malformed JSON: {exc}{hint}") from None
    if is_manifest(bundle):
        log.info("%s: a Bulk Data export manifest, passed over (its .ndjson files are read)", path)
        return []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirDataError(path, None, _not_a_bundle(bundle))
    if bundle.get("type") not in BUNDLE_TYPES:
        raise FhirDataError(path, None, f"bundle type {bundle.get('type')!r} is not one of {', '.join(BUNDLE_TYPES)}")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirDataError(path, None, f"Bundle.entry must be a list, got {type(entries).__name__}")
    return [entry for index, item in enumerate(entries) if (entry := _bundle_entry(index, item)) is not None]


def is_manifest(data: Any) -> bool:
    """Whether ``data`` is a Bulk Data ``$export`` status reply (``manifest.json``), which bulk clients save
    beside the NDJSON files it lists: no FHIR resource, so it stopped every read of the export."""
    return isinstance(data, dict) and "resourceType" not in data and {"transactionTime", "output"} <= data.keys()


def _not_a_bundle(data: Any) -> str:
    """What a ``.json`` file that is no Bundle holds instead."""
    if isinstance(data, list):
        return "expected resourceType 'Bundle', found a JSON array: put its resources in a Bundle, or in .ndjson files"
    if isinstance(data, dict) and "resourceType" not in data:
        return "expected resourceType 'Bundle', found an object without resourceType: not a FHIR resource"
    found = data.get("resourceType") if isinstance(data, dict) else JSON_TYPES.get(type(data), "null")
    return f"expected resourceType 'Bundle', found {found!r}"


#: A Bundle in an entry of a Bundle (a collection of patient bundles): each patient's resources must be in
#: one unit, and a bundle file is one; read as a resource of the outer bundle, its patients were silently lost.
NESTED = "a Bundle inside a Bundle is not read: save each inner bundle as a .json file of its own"
#: Transaction and batch requests that carry no resource by design: nothing to read.
NO_RESOURCE_METHODS = ("DELETE", "GET", "HEAD")


def _bundle_entry(index: int, item: Any) -> Entry | None:
    where = f"entry[{index}]"
    request = item.get("request") if isinstance(item, dict) else None
    if isinstance(request, dict) and request.get("method") in NO_RESOURCE_METHODS and "resource" not in item:
        return None
    if not isinstance(item, dict) or "resource" not in item:
        return Entry(None, where, error="entry without a resource")
    url = item.get("fullUrl")
    resource, full_url = item["resource"], url if isinstance(url, str) else None
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":  # read as one, 0 records, unsaid
        return Entry(resource, where, full_url=full_url, error=NESTED)
    return Entry(resource, where, full_url=full_url)


#: An NDJSON file in UTF-16 or UTF-32: its lines cannot be split on the byte 0x0a, and each was "malformed JSON:
#: truncated data" (checker h361 F4); Bulk Data's NDJSON is UTF-8. A bundle, read whole, may be in any of them.
NOT_UTF8 = "an NDJSON file must be UTF-8, and this one is {encoding}: convert it (iconv -f {encoding} -t UTF-8)"


def read_ndjson(path: Path) -> Iterator[Entry]:
    """One entry per non-blank line, with its byte offset; a bad line is an error entry, and a file
    that cannot be read a FhirDataError."""
    with open_file(path) as handle:
        offset = 0
        try:
            if (encoding := json.detect_encoding(handle.read(4))).startswith(("utf-16", "utf-32")):
                raise FhirDataError(path, None, NOT_UTF8.format(encoding=encoding.upper()))
            handle.seek(0)
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _ndjson_entry(line, f"line {number}", offset)
                offset += len(line)
        except OSError as exc:
            raise unreadable(path, exc) from None


def _ndjson_entry(line: bytes, where: str, offset: int) -> Entry:
    try:
        resource = decode_json(line)
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            error = "a Bundle on a line of a bulk export (one resource per line): save bundles as .json files"
            return Entry(resource, where, offset=offset, error=error)
        return Entry(resource, where, offset=offset)
    except json.JSONDecodeError as exc:  # its "line 2 column 1" would count the line's own newline
        problem = f"{exc.msg.removesuffix(' at')} at character {exc.pos + 1}"
        return Entry(None, where, offset=offset, error=f"malformed JSON: {problem}")
    except ValueError as exc:
        return Entry(None, where, offset=offset, error=f"malformed JSON: {exc}")


def read_line(handle: Any, offset: int, where: str) -> Entry:
    """The NDJSON resource at ``offset`` of an open binary file (second pass of an index); a
    FhirDataError naming the file and line when it cannot be read."""
    try:
        handle.seek(offset)
        line = handle.readline()
    except OSError as exc:
        raise unreadable(Path(handle.name), exc, where) from None
    return _ndjson_entry(line, where, offset)
