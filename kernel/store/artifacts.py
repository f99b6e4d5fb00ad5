"""The artifact store: immutable, content-addressed model versions with lineage and aliases.

A store is a folder holding ``index.sqlite`` (what exists) and ``blobs/`` (the bytes, named
by their sha256). ``put`` writes the blobs first (synced temp file and rename), then inserts
the index row in one SQLite transaction, so a crash at any instant leaves at worst orphan
blobs, never a listed version that cannot be read. Weights are safetensors (never pickle),
written with the safetensors adapter of the tensors' own framework, imported lazily: the
kernel itself never imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from heirloom.core.components import State
from heirloom.core.errors import HeirloomError, ResourceExhaustedError
from heirloom.core.paths import home
from heirloom.core.quota import MIB
from heirloom.core.schema import did_you_mean
from heirloom.core.version import VERSION as HEIRLOOM_VERSION
from heirloom.files import NotRegularFile, cannot_create_in, open_regular, write_atomic
from heirloom.links import first_broken, linked
from heirloom.owners import unreadable
from heirloom.store.compare import VALIDATION, PromotionRefused, check_better
from heirloom.store.content import (
    Damaged,
    canonical_json,
    check_promote,
    check_put,
    check_put_record,
    chosen,
    decode_metadata,
    decode_state,
    encode_tensors,
    finite,
    manifest_digest,
    now,
    sha256,
    state_metadata,
)
from heirloom.store.gc import BLOB_NAME, GcPlan, collect, file_size, intact, refused, remove_unreferenced
from heirloom.store.index import BACKUP_MARKER, FITTED_WAIT, MAX_VERSION, StoreIndex, StoreLocked, Transaction
from heirloom.store.refs import Ref, RefError, StoreMissing, as_ref, check_alias, check_name, spans
from heirloom.suggest import abbreviates


@attrs.frozen
class Artifact:
    """One stored version: what it is, where it came from, how good it was."""

    project: str
    model: str
    version: int
    digest: str
    parent: str | None
    parent_digest: str | None
    profile_digest: str
    data_fingerprints: dict[str, str]
    metrics: dict[str, Any]
    created_at: str
    heirloom_version: str
    plugin_versions: dict[str, str]
    model_type: str
    framework: str
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.project}/{self.model}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, **attrs.asdict(self), "aliases": list(self.aliases)}


@attrs.frozen
class Promotion:
    """What ``promote`` did, read in its transaction: a holder read before it may have moved since."""

    artifact: Artifact  # the version the alias points at now
    held: int | None  # the version it pointed at before: None for a new alias
    holder: Artifact | None  # that version's row: None when it is ``artifact`` itself or is not stored

    @property
    def moved(self) -> bool:
        return self.held != self.artifact.version


#: ``promote(held_by=...)``'s default: move the alias whoever holds it.
ANY_HOLDER = -1


class ArtifactStore:
    """A folder of artifacts; every method is safe across threads and processes."""

    fitted_wait = FITTED_WAIT  # seconds ``put`` waits for another process's write lock

    def __init__(self, root: Path, *, create: bool = True):
        """``create=False`` (``profile check``, ``heirloom ui``, which must write nothing) opens only a
        store that is there (where none is, StoreMissing, rather than a new empty store at a mistyped
        path), and only reads it: no folder made, the index opened read-only."""
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        if broken := first_broken(self.root, self.blobs) or linked(self.root / "index.sqlite"):  # mkdir: "File exists"
            raise HeirloomError(f"cannot use {self.root} as a store: {broken}")
        if not create and (missing := _missing(self.root)):
            raise StoreMissing(missing)
        try:
            if create:  # blobs/ once the index opened: a damaged index, refused, had a new blobs/ made beside it
                self.root.mkdir(parents=True, exist_ok=True)
            elif not self.root.is_dir():  # a reader makes nothing, but says why this is no store as mkdir would
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(self.root))
            if self.blobs.exists() and not self.blobs.is_dir():  # said before an index is made beside it
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(self.blobs))
            holds_blobs = self.blobs.exists() and any(BLOB_NAME.fullmatch(path.name) for path in self.blobs.iterdir())
            self.index = StoreIndex(self.root / "index.sqlite", create=not holds_blobs, writes=create)
            if create:
                self.blobs.mkdir(exist_ok=True)
        except OSError as exc:  # the store or its blobs/ is a file, or not writable
            raise HeirloomError(f"cannot use {self.root} as a store: {exc.filename}: {exc.strerror}") from None

    @classmethod
    def default(cls, configured: str | None = None, *, create: bool = True) -> ArtifactStore:
        """``HEIRLOOM_STORE``, else ``configured`` (``[store] path``), else ``HEIRLOOM_HOME/store``."""
        chosen = os.environ.get("HEIRLOOM_STORE") or configured
        return cls(Path(chosen).expanduser() if chosen else home() / "store", create=create)

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    def unwritable(self) -> str | None:
        """Why a version could not be stored here, None when it can: ``train`` asks before it reads any record,
        not after the fit. A probe file, as a mode check passes root on a read-only mount (which serves fine)."""
        for folder in (self.blobs, self.root):  # the blobs, and the index's folder (its journal files)
            if (why := cannot_create_in(folder)) is not None:
                return f"{folder}: {why}"
        index = self.index.path
        if index.exists() and not os.access(index, os.W_OK):
            return f"{index}: {os.strerror(errno.EACCES)}"
        return None

    def put(
        self,
        project: str,
        model: str,
        state: State,
        *,
        model_type: str,
        parent: Artifact | None = None,
        profile_digest: str = "",
        data_fingerprints: dict[str, str] | None = None,
        metrics: dict[str, Any] | None = None,
        plugin_versions: dict[str, str] | None = None,
        quota_mb: int | None = None,
        keep_versions: int | None = None,
        state_format: int = 1,
        identical: Callable[[list[Artifact]], Artifact | None] | None = None,
    ) -> Artifact:
        """Store ``state`` as the next version of ``project/model``; with ``quota_mb``, only
        if the project's blobs stay within it (else ResourceExhaustedError, nothing written, saying
        what retention, which runs after, keeps of them with ``keep_versions``). ``identical`` is asked under
        the write lock with the model's stored versions: one it names is returned, nothing stored (two trains
        at once, each checked before the other stored, stored the same content twice)."""
        check_name("project", project)
        check_name("model", model)
        check_put(state, parent, isinstance(parent, Artifact), model_type, data_fingerprints, metrics)
        quota_mb, keep_versions, state_format = check_put_record(
            profile_digest, plugin_versions, quota_mb, keep_versions, state_format, identical
        )
        framework, weights = encode_tensors(state.tensors)
        metadata = state_metadata(state, state_format)
        weights_sha, metadata_sha = sha256(weights), sha256(metadata)
        blobs = {f"{weights_sha}.safetensors": weights, f"{metadata_sha}.json": metadata}
        record = {
            "project": project,
            "model": model,
            "digest": manifest_digest(framework, weights_sha, metadata_sha),
            "parent": parent.ref if parent else None,
            "parent_digest": parent.digest if parent else None,
            "profile_digest": profile_digest,
            "data_fingerprints": dict(data_fingerprints or {}),
            "metrics": finite(dict(metrics or {})),
            "created_at": now(),
            "heirloom_version": HEIRLOOM_VERSION,
            "plugin_versions": dict(plugin_versions or {}),
            "model_type": model_type,
            "framework": framework,
        }
        canonical_json(record, "artifact metrics, fingerprints and versions")
        added: list[str] = []  # blobs new to the store: a failed write removes them again, leaving no orphans
        indexing = False
        try:
            # Holding the index's write lock while the blobs land keeps gc from sweeping them.
            with self.index.writing(self.fitted_wait) as tx:
                if parent is not None and tx.digest_of(parent.project, parent.model, parent.version) != parent.digest:
                    raise HeirloomError(  # it was there when resolved: not a ref naming nothing (exit 2)
                        f"parent {parent.ref} ({parent.digest[:12]}) was removed from the store at {self.root} "
                        "while this model trained (models gc?); nothing was stored"
                    )
                if identical and (same := chosen(identical, [Artifact(**row) for row in tx.rows(project, model)])):
                    return same
                if quota_mb is not None:
                    self._check_quota(tx, project, model, blobs, quota_mb, keep_versions)
                version = tx.next_version(project, model)
                for name, data in blobs.items():
                    if intact(self.blobs / name, len(data)):  # stored once: rewriting it failed on a nearly full disk
                        continue
                    if not (self.blobs / name).exists():
                        added.append(name)
                    try:
                        write_atomic(self.blobs / name, data)
                    except OSError as exc:  # a full disk: os.write names no file, so say which
                        reason = f"cannot write {self.blobs / name}: {exc.strerror or exc}"
                        raise HeirloomError(f"{reason}; the version was not stored") from exc
                indexing = True
                tx.insert(record, version, *blobs)
        except Exception as exc:  # not a kill (gc --delete-orphans is for that): the index refused, a disk filled
            if added:
                with contextlib.suppress(HeirloomError):  # an index that cannot be used now: gc finds them later
                    remove_unreferenced(self.index, self.blobs, added)
            if not ((indexing and isinstance(exc, HeirloomError)) or isinstance(exc, StoreLocked)):  # else said
                raise
            raise HeirloomError(f"{exc}; the version was not stored") from None
        self._written()
        return Artifact(version=version, **record)

    def _written(self) -> None:
        """A restored backup is a live store once written to: its marker goes. Kept, it let a
        backup of the store it came from mirror over it, deleting the versions stored since."""
        (self.root / BACKUP_MARKER).unlink(missing_ok=True)

    def _check_quota(
        self, tx: Transaction, project: str, model: str, blobs: dict[str, bytes], quota_mb: int, keep: int | None
    ) -> None:
        held = self._project_blobs(tx, project)
        used = sum(file_size(self.blobs / name) for name in held)
        adding = sum(len(data) for name, data in blobs.items() if name not in held)
        if used + adding > quota_mb * MIB:
            weighs = adding if blobs else None  # None: before a fit, not known yet
            raise ResourceExhaustedError(refused(tx, self.root, project, model, keep, used, weighs, quota_mb))

    def refuse_if_full(self, project: str, model: str, quota_mb: int | None, keep: int | None) -> None:
        """ResourceExhaustedError when ``project`` already holds more than its quota: refused before a fit,
        not after it (a train over its quota ran all its epochs, then stored nothing)."""
        if quota_mb is not None:
            with self.index.reading() as tx:
                self._check_quota(tx, project, model, {}, quota_mb, keep)

    @staticmethod
    def _project_blobs(tx: Transaction, project: str) -> set[str]:
        return {name for row in tx.project_blobs() if row[0] == project for name in row[1:]}

    def usage(self) -> dict[str, int]:
        """``{project: bytes}``: the size of the blobs each project's versions reference (a
        blob two projects share counts for both)."""
        with self.index.reading() as tx:
            projects = {row[0] for row in tx.project_blobs()}
            return {p: sum(file_size(self.blobs / n) for n in self._project_blobs(tx, p)) for p in sorted(projects)}

    def resolve(self, ref: str | Ref) -> Artifact:
        """The artifact ``ref`` names; a RefError listing what exists when it names nothing."""
        with self.index.reading() as tx:
            return self._resolve(tx, as_ref(ref))

    def load(self, ref: str | Ref | Artifact, reads: int | None = None) -> State:
        """The stored state, after checking every byte against the recorded digests; with
        ``reads`` (the loading model type's ``state_format``), a state stored in a higher
        format, which this code would misread, is a HeirloomError."""
        return self._decoded(ref, reads)[1]

    def metadata(self, ref: str | Ref | Artifact) -> dict[str, Any]:
        """The stored state's JSON metadata, checked like ``load`` (the tensors are not decoded)."""
        artifact, _, metadata, files = self._verified(ref)
        return decode_metadata(metadata, f"{artifact.ref} ({artifact.model_type})", files[1])

    def verify(self, ref: str | Ref | Artifact) -> Artifact:
        """The artifact ``ref`` names, once every byte of its blobs matches its digests and they decode (the
        weights parsed as their framework's loader parses them, the framework not imported): blobs an index
        row's digests were made to match passed, then failed every load. A version past
        ``MAX_VERSION``, which ``put`` never gives (only a hand edit of the index does), is damage too."""
        artifact = self._decoded(ref, None, check_only=True)[0]
        if artifact.version > MAX_VERSION:
            raise Damaged(f"artifact {artifact.ref} is damaged: its index row's version is past {MAX_VERSION}")
        return artifact

    def alias_damage(self) -> dict[str, str]:
        """``{project/model@ALIAS: why}`` for every alias at a version the index does not hold: the
        index's foreign key refuses one, so only a hand edit (or a tool that turned the check off)
        leaves one, and then every read through the alias fails (``models verify`` names them)."""
        damage = {}
        with self.index.reading() as tx:
            for project, model, alias, version in tx.dangling_aliases():
                if versions := tx.versions(project, model):
                    missing = f"which is not stored (versions: {spans(versions)}): heirloom models promote moves it"
                else:
                    missing = f"but {project}/{model} has no stored version: restore index.sqlite from a backup"
                damage[f"{project}/{model}@{alias}"] = f"the alias points at version {version!r}, {missing}"
        return damage

    def _decoded(
        self, ref: str | Ref | Artifact, reads: int | None, check_only: bool = False
    ) -> tuple[Artifact, State]:
        artifact, weights, metadata, files = self._verified(ref)
        what, versions = f"{artifact.ref} ({artifact.model_type})", artifact.plugin_versions
        return artifact, decode_state(artifact.framework, weights, metadata, reads, what, versions, check_only, files)

    def _verified(self, ref: str | Ref | Artifact) -> tuple[Artifact, bytes, bytes, tuple[Path, Path]]:
        """The artifact ``ref`` names, its weights' and metadata's bytes (matching its digest), their files."""
        wanted = Ref(ref.project, ref.model, str(ref.version)) if isinstance(ref, Artifact) else as_ref(ref)
        with self.index.reading() as tx:
            artifact = self._resolve(tx, wanted)
            names = tx.blobs(artifact.project, artifact.model, artifact.version)
        weights, metadata = (self._read_blob(artifact, name) for name in names)
        computed = manifest_digest(artifact.framework, sha256(weights), sha256(metadata))
        if computed != artifact.digest:
            raise Damaged(f"artifact {artifact.ref} is corrupt: its index row does not match its digest")
        return artifact, weights, metadata, (self.blobs / names[0], self.blobs / names[1])

    def _read_blob(self, artifact: Artifact, name: str) -> bytes:
        """A blob's bytes, checked against its name; never through a link, never a device, never
        outside ``blobs/`` (the name comes from the index, which may be damaged)."""
        if not BLOB_NAME.fullmatch(name):
            raise Damaged(f"artifact {artifact.ref} is damaged: its index row names the blob {name[:80]!r}")
        path = self.blobs / name
        try:
            fd = open_regular(path, os.O_NOFOLLOW)
        except FileNotFoundError:
            raise Damaged(f"artifact {artifact.ref} is damaged: {path} is missing") from None
        except PermissionError:  # intact, another user's: no damage to repair from a backup
            raise HeirloomError(f"artifact {artifact.ref}: {unreadable(path)}") from None
        except OSError as exc:  # NotRegularFile's strerror: "is a directory, not a file"
            what = exc.strerror if isinstance(exc, NotRegularFile) else f"cannot be read: {exc.strerror}"
            what = "is a symbolic link (the store never follows links)" if path.is_symlink() else what
            raise Damaged(f"artifact {artifact.ref} is damaged: {path} {what}") from None
        with os.fdopen(fd, "rb") as handle:
            try:
                data = handle.read()
            except MemoryError:
                raise HeirloomError(f"artifact {artifact.ref}: {path} does not fit in memory") from None
        expected, actual = name.partition(".")[0], sha256(data)
        if actual != expected:
            raise Damaged(f"artifact {artifact.ref} is corrupt: {path} has sha256 {actual}, not {expected}")
        return data

    def list(
        self, project: str | None = None, model: str | None = None, damaged: dict[str, str] | None = None
    ) -> list[Artifact]:
        """Every version, ordered by project, model and version; with ``damaged``, a damaged index row is left out and
        said there instead of failing the whole listing."""
        with self.index.reading() as tx:
            return [Artifact(**row) for row in tx.rows(project, model, damaged)]

    def lineage(self, ref: str | Ref) -> list[Artifact]:
        """``[ref, its parent, grandparent, ...]``, across projects; stops at an ancestor not stored."""
        with self.index.reading() as tx:
            chain = [self._resolve(tx, as_ref(ref))]
            while chain[-1].parent is not None:
                parent = self._stored_parent(chain[-1])
                row = tx.row(parent.project, parent.model, parent.version)
                if row is None:
                    break
                chain.append(Artifact(**row))
                if any(a.ref == chain[-1].ref for a in chain[:-1]):  # versions are immutable: only damage does it
                    loop = " <- ".join(a.ref for a in chain)
                    raise HeirloomError(f"{self.index.path}: the lineage loops ({loop}): the index is damaged")
        return chain

    def _stored_parent(self, artifact: Artifact) -> Ref:
        """``artifact``'s parent as the index records it: a ref no put writes is the index's
        fault, so not a RefError (what was typed names nothing, exit 2) but damage named."""
        try:
            return Ref.parse(artifact.parent)
        except RefError:
            raise HeirloomError(
                f"{self.index.path}: {artifact.ref} records its parent as {artifact.parent[:80]!r}, no artifact "
                "reference: the index is damaged; restore it from a backup"
            ) from None

    def promote(
        self,
        ref: str | Ref,
        alias: str,
        *,
        if_better: str | None = None,
        on: str | None = None,
        lower_is_better: bool = False,
        held_by: int | None = ANY_HOLDER,
    ) -> Promotion:
        """Point ``alias`` at ``ref`` (moving it if another version holds it).

        With ``if_better=METRIC`` the alias moves only if ``ref`` scores higher on METRIC (lower
        with ``lower_is_better``: an error such as mae) than the current holder on split ``on``
        (None: validation; test is for reporting), both scored on the same records of that
        split; otherwise PromotionRefused says why.
        Check and move happen in one transaction, after the candidate's blobs were read, checked
        against its digest and decoded: an alias never moves onto blobs that would not decode (a
        state the model type then refuses, its tensors another's, is the loading's to say).
        ``held_by`` (a version, or None for no holder) moves it only if it is still where a
        comparison made outside found it (``--rescore``); PromotionRefused otherwise.
        The :class:`Promotion` says what the transaction found and did (what to report).
        """
        check_alias(alias)
        check_promote(if_better, on, lower_is_better)
        on = VALIDATION if on is None else on
        try:
            verified = self.verify(ref)
        except RefError:
            raise
        except HeirloomError as exc:
            raise HeirloomError(f"not promoted: {exc}; {alias} stays where it was") from None
        with self.index.writing() as tx:  # exactly the version verified, whatever ``ref`` names now
            candidate = self._resolve(tx, Ref(verified.project, verified.model, str(verified.version)))
            held = tx.alias_version(candidate.project, candidate.model, alias)
            if held_by != ANY_HOLDER and held not in (held_by, candidate.version):
                was = "nothing" if held_by is None else f"@{held_by}"
                raise PromotionRefused(
                    f"{alias} moved to @{held} since it was compared (it held {was}); run the promote again"
                )
            row = tx.row(candidate.project, candidate.model, held) if held not in (None, candidate.version) else None
            holder = Artifact(**row) if row else None
            if if_better is not None:  # also when REF holds it: a misspelt (or empty) metric is an error either way
                check_better(candidate, holder, if_better, on, lower_is_better=lower_is_better)
            tx.set_alias(candidate.project, candidate.model, alias, candidate.version, now())
            promoted = Artifact(**tx.row(candidate.project, candidate.model, candidate.version))
        self._written()
        return Promotion(promoted, held, holder)

    def alias_history(self, project: str, model: str) -> list[dict[str, Any]]:
        """``[{"alias", "version", "previous", "moved_at"}]``: every move of the model's aliases, oldest first."""
        with self.index.reading() as tx:
            return tx.alias_moves(project, model)

    def alias_version(self, project: str, model: str, alias: str) -> int | None:
        """The version ``alias`` points at (one indexed query: daemons poll it to hot-swap)."""
        with self.index.reading() as tx:
            return tx.alias_version(project, model, alias)

    def gc(
        self,
        keep: int,
        *,
        dry_run: bool = False,
        orphans: bool = False,
        project: str | None = None,
        previous: bool = True,
    ) -> GcPlan:
        """Delete versions nobody needs, and their blobs; ``dry_run`` plans the same, does nothing. Kept, per
        project/model: the newest ``keep``, every aliased one and (``previous``) each alias's previous one, and every
        ancestor of a kept one (in any project); with ``project``, only its versions may go (retention after a train).
        Temp files a crash left go too; blobs no version references only with ``orphans`` (heirloom.store.gc)."""
        return collect(
            self.index, self.blobs, keep, dry_run=dry_run, orphans=orphans, project=project, previous=previous
        )

    def _resolve(self, tx: Transaction, ref: Ref) -> Artifact:
        versions = tx.versions(ref.project, ref.model)
        if not versions:
            known, named = tx.names(), f"{ref.project}/{ref.model}"
            raise RefError(
                f"no model {named!r} in the store at {self.root}{did_you_mean(named, known)} "
                f"(models: {', '.join(known) or 'none'})"
            )
        aliases = tx.aliases(ref.project, ref.model)
        if ref.selector is None:
            version = versions[-1]
        elif ref.version is not None:
            version = ref.version
            if version not in versions:
                raise RefError(f"no version {version} of {ref.project}/{ref.model} (versions: {spans(versions)})")
        elif ref.selector in aliases:
            version = aliases[ref.selector]
            if version not in versions:
                raise RefError(
                    f"{ref.project}/{ref.model}@{ref.selector} points at version {version!r}, which is not stored "
                    f"(a damaged index; models promote moves the alias again) (versions: {spans(versions)})"
                )
        else:
            listed = ", ".join(f"{name} -> @{number}" for name, number in sorted(aliases.items())) or "none"
            close = abbreviates(ref.selector, aliases) or did_you_mean(ref.selector, aliases)  # @prod: h380, v17 F4
            latest = f"{ref.project}/{ref.model}@{versions[-1]}"
            then = "" if close else f"; latest: {latest}. To set it: heirloom models promote {latest} {ref.selector}"
            raise RefError(f"{ref.project}/{ref.model} has no alias {ref.selector!r}{close} (aliases: {listed}){then}")
        return Artifact(**tx.row(ref.project, ref.model, version))


def _missing(root: Path) -> str:
    """Why ``root`` (no broken link) holds no store yet ("" when it may hold one, or cannot be one: opening says)."""
    if (root / "index.sqlite").exists() or os.path.lexists(root / "blobs"):
        return ""
    if root.is_dir():
        return f"{root} holds no store yet"
    below_folders = all(parent.is_dir() for parent in root.parents if parent.exists())  # not under a file
    return f"{root} does not exist yet" if below_folders and not root.exists() else ""
