"""An artifact's content as bytes: tensors as safetensors, metadata as canonical JSON, and
the digests that make equal content get equal names. No index, no files: the store puts
these bytes where they belong."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import numbers
import reprlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors

from heirloom.core.components import State
from heirloom.core.errors import HeirloomError
from heirloom.limits import nests_deeper

#: The framework recorded for a state without tensors.
NO_TENSORS = "none"


class Damaged(HeirloomError):
    """A stored version whose bytes are missing or do not match: what every command that meets it says,
    with how to mend it (eval and serve said only what was wrong). ``damage``: the what alone."""

    def __init__(self, damage: str):
        self.damage = damage
        super().__init__(
            f"{damage}; to repair it, restore its blobs from a backup or move its aliases to a good version "
            "(heirloom models verify lists every damaged version and says how; docs/OPERATIONS.md)"
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any, what: str) -> bytes:
    """Deterministic JSON bytes, so equal content gets equal digests; strict JSON (no NaN or
    infinity, which other languages' parsers refuse), nesting at most MAX_METADATA_NESTING levels
    (json writes deeper, but reading it back for display or a warm start would recurse too far)."""
    if nests_deeper(value, MAX_METADATA_NESTING):
        where, found = _unstorable(value, "") or ("the top", "deep nesting")
        raise HeirloomError(f"{what} must be JSON-serialisable: it holds {found} at {where}")
    if not 0 < sys.get_int_max_str_digits() <= READABLE_DIGITS and (found := _unstorable(value, "")):
        raise HeirloomError(f"{what} must be JSON-serialisable: it holds {found[1]} at {found[0]}")  # h401 F4
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:  # ValueError: a cycle, too
        found = _unstorable(value, "")
        said = f"it holds {found[1]} at {found[0]}" if found else exc
        raise HeirloomError(f"{what} must be JSON-serialisable: {said}") from exc


#: How deep the search for what JSON cannot hold looks (a value that holds itself nests for
#: ever); json itself stores deeper metadata, which nothing needs.
MAX_METADATA_NESTING = 400
#: The digits of the longest integer every Python process reads, whatever bound a plugin set in its own.
READABLE_DIGITS = sys.int_info.default_max_str_digits


def _unstorable(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    """``(key path, what)`` of the first part of ``value`` JSON cannot hold: a NaN or infinite
    float, or an object of another type (``("scores[2]", "NaN or infinity")``, ``("seen", "a set")``)."""
    where = path or "the top"
    if depth > MAX_METADATA_NESTING:
        return where[:300], f"nesting deeper than {MAX_METADATA_NESTING} levels (or a value that holds itself)"
    if isinstance(value, float) and not math.isfinite(value):
        return where[:300], "NaN or infinity (store None for a value not measured)"
    if isinstance(value, int) and abs(value) >= _TOO_LONG:
        return where[:300], f"an integer of over {READABLE_DIGITS:,} digits (no Python reads it back: store it as text)"
    if isinstance(value, str) and (said := _not_utf8(value)):
        return where[:300], said
    if not isinstance(value, dict | list | tuple):
        if isinstance(value, str | int | float | bool | None):
            return None
        if type(value).__module__ == "numpy":  # a mean's float32: said as check_model says it (h446 F2)
            return where, f"a numpy {type(value).__name__} (store value.item(), or .tolist() for an array)"
        return where, f"a {type(value).__name__}"
    if isinstance(value, dict) and len(kinds := _key_kinds(value)) > 1:  # sort_keys cannot order 1 and "two"
        return (
            where,
            f"keys of mixed types ({' and '.join(sorted(kinds.values()))}; JSON's keys are text: use str keys)",
        )
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if not isinstance(key, str | int | float | bool | None):
            return where, f"a {type(key).__name__} key"
        if isinstance(key, str) and (said := _not_utf8(key)):
            return where, f"a key holding {said}"
        if isinstance(key, int) and abs(key) >= _TOO_LONG:  # its path could not be written either (v23 F3)
            return where, f"an integer key of over {READABLE_DIGITS:,} digits (store it as text)"
        step = f"[{key}]" if isinstance(value, list | tuple) else f"{'.' if path else ''}{key}"
        if (found := _unstorable(item, path + step, depth + 1)) is not None:
            return found
    return None


#: The least integer of more digits than READABLE_DIGITS: a plugin that raised Python's bound stored one, and its
#: version was unreadable in every other process (h401 F4).
_TOO_LONG = 10**READABLE_DIGITS


def _not_utf8(text: str) -> str:
    """What makes ``text`` no UTF-8 (a lone surrogate, ``"\\ud800"``: JSON's bytes could not hold it), else ""."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return f"a lone surrogate {text[exc.start]!a} (no UTF-8 text)"
    return ""


def _key_kinds(value: dict) -> dict[str, str]:
    """The kinds of a map's JSON keys that sort apart (text, number, null), each with a type name of one."""
    kinds = {}
    for key in value:
        if isinstance(key, str | int | float | None):
            kinds["text" if isinstance(key, str) else "null" if key is None else "number"] = type(key).__name__
    return kinds


def finite(value: Any, depth: int = 0) -> Any:
    """``value`` with every NaN or infinite float inside replaced by None (JSON's null): a
    metric that could not be computed is stored as missing, never as an unparsable NaN.
    HeirloomError past MAX_METADATA_NESTING levels (a bare RecursionError, deeper)."""
    if depth > MAX_METADATA_NESTING:
        raise HeirloomError(f"metrics must be JSON-serialisable: they nest deeper than {MAX_METADATA_NESTING} levels")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item, depth + 1) for item in value]
    return value


#: The metadata key that records a state's format (``Model.state_format``) when above 1.
STATE_FORMAT_KEY = "heirloom_state_format"


def check_put(state: Any, parent: Any, parent_ok: bool, model_type: Any, fingerprints: Any, metrics: Any) -> None:
    """HeirloomError for what ``ArtifactStore.put`` cannot store, saying what it takes (``parent_ok``: the parent is
    an Artifact): it was a bare AttributeError, an sqlite IntegrityError, or a type stored as text (h448 F5, v40 F2)."""
    if not isinstance(state, State) or not (parent is None or parent_ok):
        wrong = f"state a {type(state).__name__}" if not isinstance(state, State) else f"parent {parent!r:.80}"
        raise HeirloomError(f"put takes a heirloom.State, and as parent an Artifact (store.resolve(ref)): {wrong}")
    if not isinstance(model_type, str) or not model_type.strip():
        raise HeirloomError(f"put takes model_type as the name of a model type (text), got {model_type!r:.80}")
    for name, value in (("metrics", metrics), ("data_fingerprints", fingerprints)):
        if value is not None and not isinstance(value, dict):
            raise HeirloomError(f"put takes {name} as a dict (or None), got {value!r:.80}")
    keys = [*(metrics or ()), *(key for value in (metrics or {}).values() if isinstance(value, dict) for key in value)]
    if (key := next((key for key in keys if not isinstance(key, str)), None)) is not None:  # validation's too (v42 F5)
        raise HeirloomError(f"put takes metrics keyed by their names, text: key {key!r:.80} would be stored as text")
    if fingerprints and not all(isinstance(key, str) and isinstance(v, str) for key, v in fingerprints.items()):
        raise HeirloomError("put takes data_fingerprints as a dict of source name to fingerprint, both text")


def check_put_record(
    profile_digest: Any, plugin_versions: Any, quota_mb: Any, keep_versions: Any, state_format: Any, identical: Any
) -> tuple[int | None, int | None, int]:
    """``quota_mb``, ``keep_versions`` and ``state_format`` as Python ints (a numpy int is one: v44 F8, v45 F2, F7; a
    numpy int32 quota of 4096 MiB overflowed to 0); HeirloomError for ``put``'s record arguments of another type: a
    digest 5 was stored as '5', versions of ``"abc"`` were a bare ValueError (``[]`` stored), a quota of ``"5"`` a
    TypeError from the comparison (v42 F5, v43 F7), an ``identical`` of 5 a bare TypeError."""
    if not isinstance(profile_digest, str):
        raise HeirloomError(f"put takes profile_digest as text (the profile's sha256), got {profile_digest!r:.80}")
    versions = {} if plugin_versions is None else plugin_versions
    if identical is not None and not callable(identical):
        raise HeirloomError(
            f"put takes identical as a function of the stored versions (or None), got {identical!r:.80}"
        )
    if not isinstance(versions, dict) or not all(isinstance(text, str) for pair in versions.items() for text in pair):
        raise HeirloomError(
            f"put takes plugin_versions as a dict of distribution to version, both text, got {plugin_versions!r:.80}"
        )
    quota, keep = _count("quota_mb", quota_mb, 0), _count("keep_versions", keep_versions, 0)
    return quota, keep, _count("state_format", state_format, 1)  # type: ignore[return-value]


def _count(name: str, value: Any, least: int) -> int | None:
    """``value`` as a Python int, or HeirloomError naming ``name``: a whole number of ``least`` or more, or None
    where ``least`` is 0 (no quota, no retention)."""
    if value is None and least == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        none = " (or None)" if least == 0 else ""
        raise HeirloomError(f"put takes {name} as a whole number of {least} or more{none}, got {value!r:.80}")
    return int(value)


def chosen(identical: Callable[[list[Any]], Any], versions: list[Any]) -> Any:
    """The one of ``versions`` that ``identical`` names, or None; HeirloomError for an answer that is neither:
    ``put`` returned whatever it gave (5, "x") as the version stored, storing nothing (checker v44 F8)."""
    same = identical(versions)
    if same is not None and same not in versions:
        raise HeirloomError(f"put's identical returned {same!r:.80}, not one of the versions it was given, nor None")
    return same


def now() -> str:
    """The time a version is stored or an alias moved: UTC, to the millisecond, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_promote(if_better: Any, on: Any, lower_is_better: Any) -> None:
    """HeirloomError for ``promote``'s comparison given without its metric (it moved the alias unsaid: h448 F6, v39
    F1), or a metric or direction of another type (``if_better=1`` was an AttributeError, "no" true: v42 F6)."""
    for name, value, kind in (("if_better", if_better, str), ("lower_is_better", lower_is_better, bool)):
        if value is not None and type(value) is not kind:
            raise HeirloomError(f"promote takes {name} as {kind.__name__} (or None), got {value!r:.80}")
    if if_better is None and (lower_is_better or on is not None):
        given = " and ".join(n for n, v in (("lower_is_better", lower_is_better), ("on", on is not None)) if v)
        raise HeirloomError(f"{given} given without the metric to compare by: give if_better=METRIC too")


def state_metadata(state: State, state_format: int = 1) -> bytes:
    """A state's metadata as canonical JSON: a dict, as the model contract says; a format
    above 1 is recorded in it (format 1 leaves the bytes, so the digest, as they were)."""
    if not isinstance(state.metadata, dict):
        raise HeirloomError(f"state metadata must be a dict, got {type(state.metadata).__name__}")
    if STATE_FORMAT_KEY in state.metadata:
        raise HeirloomError(f"state metadata key {STATE_FORMAT_KEY!r} is heirloom's (Model.state_format sets it)")
    check_format(state_format, "Model.state_format")
    recorded = state.metadata if state_format == 1 else {**state.metadata, STATE_FORMAT_KEY: state_format}
    return canonical_json(recorded, "state metadata")


def decode_state(
    framework: str,
    weights: bytes,
    metadata: bytes,
    reads: int | None,
    what: str,
    stored_with: dict[str, str],
    check_only: bool = False,
    files: tuple[Path, Path] | None = None,
) -> State:
    """The state ``what`` (a version) stored; HeirloomError if stored in a format above
    ``reads`` (the loading model type's ``state_format``), which this code would misread.
    ``stored_with``: the plugin releases that stored it (``{distribution: version}``).
    ``check_only``: its tensors are checked, not decoded (``decode_tensors``), and left out.
    ``files``: the weights' and metadata's blobs, named in a Damaged error: the file to restore."""
    try:
        tensors = decode_tensors(framework, weights, check_only)
    except Exception as exc:  # noqa: BLE001 - safetensors' error, a header declaring 2**62 bytes: a forged or torn blob
        at = f" ({files[0]})" if files else ""
        raise Damaged(f"{what} is damaged: its weights{at} do not decode ({type(exc).__name__}: {exc})") from None
    state = State(tensors, decode_metadata(metadata, what, files[1] if files else None))
    if refusal := format_refusal(state.metadata, reads, what, stored_with):
        raise HeirloomError(refusal)
    return state


def format_refusal(metadata: dict[str, Any], reads: int | None, what: str, stored_with: dict[str, str]) -> str:
    """Why a model type reading state format ``reads`` (None: any) must not load the state ``what`` (a version)
    whose ``metadata`` this pops the recorded format from; "" if it may. ``profile check`` asks it of a parent
    too, from the metadata alone: ``train`` would refuse the parent on its ``inherit`` key (checker h301 F2)."""
    stored = metadata.pop(STATE_FORMAT_KEY, 1)
    check_format(stored, f"{what}: its stored {STATE_FORMAT_KEY}")
    if reads is None or stored <= check_format(reads, "Model.state_format"):
        return ""
    releases = ", ".join(f"{dist} {version}" for dist, version in sorted(stored_with.items()))
    return (
        f"{what} holds state of format {stored}; the installed model type reads format {reads} at most "
        f"(the version was stored with {releases or 'no plugin recorded'}): install a release of its plugin "
        f"whose model type reads format {stored} (heirloom itself for heirloom's), or use a version it stored"
    )


def decode_metadata(metadata: bytes, what: str, file: Path | None = None) -> dict[str, Any]:
    """A version's metadata blob as the JSON object it must be; HeirloomError naming ``what`` (and the
    blob ``file``) otherwise (a blob whose digest an index row was made to match: tracebacks in train and show)."""
    at = f" ({file})" if file else ""
    try:
        value = json.loads(metadata)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested past the parser's depth
        raise Damaged(f"{what} is damaged: its metadata{at} is not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict):
        raise Damaged(f"{what} is damaged: its metadata{at} is a JSON {type(value).__name__}, not an object")
    return value


def check_format(value: Any, what: str) -> int:
    """``value``, a state format: a whole number, 1 or more (HeirloomError otherwise)."""
    if type(value) is not int or value < 1:
        raise HeirloomError(f"{what} must be a whole number, 1 or more: {value!r}")
    return value


def manifest_digest(framework: str, weights: str, metadata: str) -> str:
    """The artifact digest: it covers both blobs and how to decode them."""
    manifest = {"framework": framework, "metadata": metadata, "weights": weights}
    return sha256(canonical_json(manifest, "manifest"))


def _adapter(framework: str) -> Any:
    try:
        return importlib.import_module(f"safetensors.{framework}")
    except ImportError as exc:
        raise HeirloomError(f"cannot (de)serialise {framework} tensors: safetensors.{framework}: {exc}") from exc


def state_digest(state: State, state_format: int = 1) -> str:
    """The digest ``put`` would give ``state``: equal digests, equal content."""
    if not isinstance(state, State):  # a dict of weights: an error naming it, not an AttributeError's traceback
        raise HeirloomError(f"it returned {reprlib.repr(state)}, a {type(state).__name__}, not a heirloom.State")
    framework, weights = encode_tensors(state.tensors)
    return manifest_digest(framework, sha256(weights), sha256(state_metadata(state, state_format)))


def encode_tensors(tensors: dict[str, Any]) -> tuple[str, bytes]:
    """``(framework, safetensors bytes)``, using the adapter of the tensors' own library."""
    if not isinstance(tensors, dict):  # State(None, {}): a bare AttributeError (checker v39 F5)
        raise HeirloomError(
            f"a state's tensors must be a dict of name to tensor ({{}} for none), got {type(tensors).__name__}"
        )
    if plain := [f"{name!r} is a {type(t).__name__}" for name, t in tensors.items() if not hasattr(t, "shape")]:
        raise HeirloomError(  # the framework was guessed from a list's module, "builtins", and blamed
            f"a state's tensors must be arrays or tensors (numpy, torch): {', '.join(plain[:5])} "
            "(put plain values in the state's metadata)"
        )
    frameworks = {type(t).__module__.split(".")[0] for t in tensors.values()}
    if not frameworks:
        return NO_TENSORS, b""
    if len(frameworks) > 1:
        raise HeirloomError(f"a state's tensors must come from one framework, got {', '.join(sorted(frameworks))}")
    framework = frameworks.pop()
    odd = [ascii(name) for name in tensors if not isinstance(name, str) or _not_utf8(name)]
    if odd:  # a lone surrogate cannot be written: the refusal named no tensor (h401 F3)
        raise HeirloomError(f"a state's tensor names must be strings of UTF-8 text, got {', '.join(odd)}")
    if "__metadata__" in tensors:  # safetensors' header keeps it: stored, the version never loaded (h401 F1)
        raise HeirloomError("a state's tensor may not be named '__metadata__': safetensors' header holds that name")
    if framework == "torch" and (unstorable := _torch_unstorable(tensors)):
        raise HeirloomError(f"the state's tensors cannot be stored as safetensors: {unstorable}")
    if framework == "numpy" and (unstorable := _numpy_unstorable(tensors)):
        raise HeirloomError(f"the state's tensors cannot be stored as safetensors: {unstorable}")
    if framework == "numpy" and (strided := [repr(n) for n, a in tensors.items() if not a.flags.c_contiguous]):
        raise HeirloomError(  # numpy's writer takes the memory as it lies: a transpose loaded back untransposed
            f"the state's arrays {', '.join(strided)} are not C-contiguous (a transpose, a slice, Fortran order): "
            "written as they lie in memory they would load with other values; store np.ascontiguousarray(a)"
        )
    if framework == "numpy" and (tied := _sharing_memory(tensors)):  # torch's writer checks; numpy's does not
        raise HeirloomError(
            f"the state's arrays {', '.join(tied)} share memory: loaded back they would be copies, no longer "
            "tied (store one and tie them again in load)"
        )
    try:
        return framework, _adapter(framework).save(tensors)
    except Exception as exc:  # safetensors and the framework raise several types
        raise HeirloomError(
            f"cannot write the state's {framework} tensors as safetensors ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); each must be an array or tensor (not a scalar), contiguous, and "
            f"not share memory with another ({COPY_ADVICE.get(framework, 'a contiguous copy of each')})"
        ) from exc


#: How to make an independent contiguous copy of a tensor, in each framework's words.
COPY_ADVICE = {"numpy": "np.ascontiguousarray(a).copy()", "torch": "t.contiguous().clone()"}


def _numpy_unstorable(arrays: dict[str, Any]) -> str:
    """What safetensors cannot write among numpy ``arrays``, by key ("" if nothing): a numpy scalar (no
    buffer to write: it failed with AttributeError 'ctypes') or a dtype other than bool, int or float.
    Read by duck typing: the kernel never imports numpy (an array has ``ctypes``, a numpy scalar has not)."""
    said = []
    for name, array in arrays.items():
        if not hasattr(array, "ctypes"):
            said.append(
                f"{name!r} is a numpy {type(array).__name__} scalar (np.asarray(x), or float(x) in the metadata)"
            )
        elif array.dtype.kind not in "biuf":
            said.append(
                f"{name!r} has dtype {array.dtype}: only bool, int and float arrays are (text goes in the metadata)"
            )
    return "; ".join(said[:5])


def _torch_unstorable(tensors: dict[str, Any]) -> str:
    """What safetensors would store otherwise than ``tensors`` hold, by key ("" if nothing): a complex tensor (a
    conjugate view was stored unconjugated: h401 F2; numpy's are refused), or one whose negative bit is set
    (written as its memory lies, unnegated). Read by duck typing: the kernel never imports torch."""
    said = []
    for name, tensor in tensors.items():
        if tensor.is_complex():
            said.append(
                f"{name!r} has dtype {tensor.dtype}: only bool, int and float tensors are (store its real and imag)"
            )
        elif tensor.is_neg():
            said.append(f"{name!r} is a negative view, stored as its memory lies: store t.resolve_neg()")
    return "; ".join(said[:5])


def _sharing_memory(arrays: dict[str, Any]) -> list[str]:
    """``'a' and 'b'`` for each array whose memory overlaps an earlier one's (by address)."""
    spans = sorted((a.__array_interface__["data"][0], a.nbytes, name) for name, a in arrays.items() if a.nbytes)
    tied, end, holder = [], 0, ""
    for start, size, name in spans:
        if start < end:
            tied.append(f"{holder!r} and {name!r}")
        if start + size > end:
            end, holder = start + size, name
    return tied


def decode_tensors(framework: str, data: bytes, check_only: bool = False) -> dict[str, Any]:
    """``framework``'s tensors of a weights blob. With ``check_only``, none: the blob is parsed as every
    framework's loader parses it first (safetensors' header, dtypes, shapes, offsets), and the framework's
    adapter looked up, without importing the framework (torch took seconds of each promote and verify)."""
    if framework == NO_TENSORS:
        return {}
    if not check_only:
        return _adapter(framework).load(data)
    if importlib.util.find_spec(f"safetensors.{framework}") is None:
        raise HeirloomError(f"safetensors has no {framework!r} adapter")
    safetensors.deserialize(data)
    return {}
