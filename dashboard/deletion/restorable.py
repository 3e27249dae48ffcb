"""Whether a deleted manifest can still be put back, and whether a restore really worked.

A restore needs everything the recorded manifest references to still answer in the registry:
an image's config and layers, an index's child manifests (and theirs). Garbage collection
removes them once nothing references them, so the answer is always read from the registry, in
parallel and bounded, never trusted from earlier. Each blob is asked for its first byte rather
than with a HEAD: distribution answers a HEAD from its blob-descriptor cache (registry:2's stock
`inmemory` one), which still lists what garbage collection removed.

The Recently deleted page asks for a page of records at once; what it learns is kept briefly
by digest, under a key that names the last garbage collection the dashboard ran, so that run
shows at once, and one run outside the dashboard within CHECK_TTL. A restore always reads live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache

from .. import remote
from ..models import Deletion, GCRun
from ..registry import errors as e
from ..registry.client import run_bounded
from ..registry.names import attachment_target
from ..registry.ops import external_layers
from ..registry.parse import digest_of, parse_manifest

# Seconds a page keeps what it learned about a digest: a collection run outside the dashboard
# shows on the page within this long (a restore never relies on it).
CHECK_TTL = 120
# Nested indexes deeper than this are not followed (no real image nests more than twice).
MAX_DEPTH = 8
# How many missing digests a message names before it says "and N more".
SHOWN = 3


@dataclass(frozen=True)
class Check:
    """What the registry answered for everything one manifest needs."""

    #: How many blobs and child manifests it needs (what could be asked for).
    needed: int
    #: Those the registry no longer has, in manifest order.
    missing: tuple[str, ...] = ()
    #: The registry's own words for the first missing one.
    said: str = ""
    #: Why it could not be told ("" when it could): the registry failed to answer.
    problem: str = ""

    @property
    def restorable(self) -> bool | None:
        """False: something is gone; None: could not tell; True: everything answers."""
        if self.missing:
            return False
        return None if self.problem else True


@dataclass
class _Pending:
    missing: list[str]
    said: str = ""
    problem: str = ""
    needed: int = 0


def check_many(items: list[tuple[str, bytes, str]]) -> list[Check]:
    """For each (repository, manifest bytes, media type): what the registry still has of what it
    needs. Child manifests are read level by level, then every blob is probed; each level is one
    bounded parallel batch, and each (repository, digest) is asked for once."""
    client = remote.client()
    workers = remote.concurrency()
    state = [_Pending(missing=[]) for _ in items]
    blobs: list[dict[str, int]] = [{} for _ in items]  # digest -> size, in manifest order
    frontier = [(i, name, raw, media_type) for i, (name, raw, media_type) in enumerate(items)]
    seen: list[set[str]] = [set() for _ in items]
    for _ in range(MAX_DEPTH):
        children: dict[tuple[str, str], list[int]] = {}
        for i, name, raw, media_type in frontier:
            manifest = parse_manifest(raw, media_type=media_type, digest=digest_of(raw))
            if manifest.is_index:
                for child in manifest.manifests:
                    if child.digest not in seen[i]:
                        seen[i].add(child.digest)
                        state[i].needed += 1
                        children.setdefault((name, child.digest), []).append(i)
            elif manifest.is_image_manifest:
                external = external_layers(raw)
                for d in (manifest.config, *manifest.layers):
                    if d is not None and d.digest not in external and d.digest not in seen[i]:
                        seen[i].add(d.digest)
                        state[i].needed += 1
                        blobs[i][d.digest] = d.size
            # Anything else references nothing we could check: the registry decides on the PUT.
        if not children:
            break
        keys = list(children)
        answers = run_bounded(lambda key: client.manifest_bytes(*key), keys, workers)
        frontier = []
        for (name, digest), got in zip(keys, answers, strict=True):
            for i in children[(name, digest)]:
                if isinstance(got, BaseException):
                    _note(state[i], digest, got)
                else:
                    frontier.append((i, name, got[0], got[1]))
    sizes = {(items[i][0], d): size for i in range(len(items)) for d, size in blobs[i].items()}
    wanted = list(sizes)

    def probe(key: tuple[str, str]) -> object:
        # An empty blob has no first byte to ask for (distribution answers 416 and then drops
        # the connection): a HEAD has to do.
        return client.probe_blob(*key) if sizes[key] else client.head_blob(*key)

    answers = run_bounded(probe, wanted, workers)
    found = dict(zip(wanted, answers, strict=True))
    for i, (name, _, _) in enumerate(items):
        for digest in blobs[i]:
            got = found[(name, digest)]
            if isinstance(got, BaseException):
                _note(state[i], digest, got)
    return [Check(needed=s.needed, missing=tuple(s.missing), said=s.said, problem=s.problem) for s in state]


def _note(pending: _Pending, digest: str, error: BaseException) -> None:
    if isinstance(error, e.NotFound):
        pending.missing.append(digest)
        pending.said = pending.said or str(error)
    else:
        pending.problem = pending.problem or str(error)


def check(name: str, raw: bytes, media_type: str) -> Check:
    """One manifest, read live."""
    return check_many([(name, raw, media_type)])[0]


# -- the Recently deleted page ----------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """Whether one record can still be restored, and if not since when and how to get it back."""

    check: Check
    #: The dashboard's garbage collection that removed it (None: a run outside the dashboard).
    removed_by: GCRun | None = None
    #: The command that brings it back: pushing it again.
    push: str = ""

    @property
    def restorable(self) -> bool | None:
        return self.check.restorable


def _gc_generation() -> int:
    """The last garbage collection the dashboard finished: part of every cache key, so its
    results never outlive a collection."""
    last = GCRun.objects.filter(dry_run=False, finished_at__isnull=False).order_by("-finished_at", "-id").first()
    return last.pk if last else 0


def _key(generation: int, name: str, digest: str) -> str:
    return remote.cache_key("restorable", f"{generation}:{name}@{digest}")


def remember(name: str, digest: str, result: Check) -> None:
    """Keep a definite answer for the page (a restore just read it live)."""
    if result.restorable is not None:
        cache.set(_key(_gc_generation(), name, digest), result, CHECK_TTL)


def forget(name: str, digest: str) -> None:
    cache.delete(_key(_gc_generation(), name, digest))


def states(records: list[Deletion]) -> dict[int, State]:
    """For each record not yet restored: can it still be? Cached answers first, the rest read live
    in one bounded batch."""
    open_records = [r for r in records if not r.restored_at]
    if not open_records:
        return {}
    generation = _gc_generation()
    keys = {r.pk: _key(generation, r.repository, r.digest) for r in open_records}
    known: dict[str, Check] = cache.get_many(list(set(keys.values())))
    unknown = {keys[r.pk]: r for r in open_records if keys[r.pk] not in known}
    if unknown:
        try:
            # One request first: a registry that is down fails the page's checks once, not per blob.
            remote.client().ping()
        except e.RegistryError as exc:
            fresh = [Check(needed=0, problem=str(exc))] * len(unknown)
        else:
            fresh = check_many([(r.repository, bytes(r.manifest), r.media_type) for r in unknown.values()])
        learned = dict(zip(unknown, fresh, strict=True))
        cache.set_many({k: c for k, c in learned.items() if c.restorable is not None}, CHECK_TTL)
        known.update(learned)
    runs = _collections_since(min(r.created_at for r in open_records))
    found: dict[int, State] = {}
    for r in open_records:
        result = known[keys[r.pk]]
        gone = result.restorable is False
        found[r.pk] = State(
            check=result, removed_by=_removed_by(r, runs) if gone else None, push=push_command(r) if gone else ""
        )
    return found


def _collections_since(when: datetime) -> list[GCRun]:
    return list(
        GCRun.objects.filter(dry_run=False, state=GCRun.State.SUCCEEDED, finished_at__gt=when).order_by(
            "finished_at", "id"
        )
    )


def _removed_by(record: Deletion, runs: list[GCRun]) -> GCRun | None:
    """The first collection after the delete that could remove it: an untagged manifest only goes
    with --delete-untagged. None when the dashboard ran none (it ran outside the dashboard)."""
    after = [run for run in runs if run.finished_at and run.finished_at > record.created_at]
    if record.action == Deletion.Action.UNTAG:
        return next((run for run in after if run.delete_untagged), after[0] if after else None)
    return after[0] if after else None


def push_command(record: Deletion) -> str:
    """What brings it back: pushing the image again, or for an attachment, attaching it again."""
    tag = record.tags[0] if record.tags else "<tag>"
    where = f"{remote.pull_host()}/{record.repository}"
    attached = attachment_target(tag)
    if attached is None:
        return f"docker push {where}:{tag}"
    image = f"{where}@{attached[0]}"
    return {
        "signature": f"cosign sign {image}",
        "attestation": f"cosign attest --predicate <file> {image}",
        "sbom": f"cosign attach sbom --sbom <file> {image}",
    }.get(attached[1], f"oras attach --artifact-type <type> {image} <file>")


def refusal(record: Deletion, result: Check) -> str:
    """Why the record cannot be restored, and what brings the image back, for a message."""
    run = _removed_by(record, _collections_since(record.created_at))
    when = (
        f"on {run.finished_at:%Y-%m-%d %H:%M} UTC"
        if run and run.finished_at
        else f"(run outside the dashboard) after it was deleted on {record.created_at:%Y-%m-%d %H:%M} UTC"
    )
    gone = len(result.missing)
    more = f", and {gone - 1} more" if gone > 1 else ""
    what = ", ".join(record.tags) or record.digest[:19] + "…"
    return (
        f"{record.repository}: cannot restore {what} — garbage collection removed its layers {when}. "
        f"{gone} of the {result.needed} blobs and manifests it needs are gone: {result.said}{more}. "
        f"Nothing was changed. Push it again from CI: {push_command(record)}"
    )


# -- after a restore ---------------------------------------------------------------------------------


def confirm_restored(record: Deletion) -> tuple[str, str]:
    """What is wrong with a restore the registry accepted, read back (the manifest by digest and by
    each tag, and every blob it needs), and what to do about it; ("", "") when all of it answers."""
    name, digest, raw = record.repository, record.digest, bytes(record.manifest)
    client = remote.client()
    refs = [digest, *dict.fromkeys(record.tags)]
    answers = run_bounded(lambda ref: client.manifest_bytes(name, ref), refs, remote.concurrency())
    problems: list[str] = []
    unserved = False
    for ref, got in zip(refs, answers, strict=True):
        shown = f"{name}@{digest[:19]}…" if ref == digest else f"{name}:{ref}"
        if isinstance(got, BaseException):
            problems.append(f"reading {shown} back answered: {got}")
            unserved = unserved or isinstance(got, e.NotFound)
        elif got[2] != digest:
            problems.append(f"{shown} now points at {got[2][:19]}…, not at {digest[:19]}…")
    result = check(name, raw, record.media_type)
    if result.missing:
        problems.append(
            f"{len(result.missing)} of the {result.needed} blobs and manifests it needs do not answer: {result.said}"
        )
    elif result.problem:
        problems.append(f"its blobs could not be read back: {result.problem}")
    if not problems:
        return "", ""
    hint = ""
    if unserved:
        hint = (
            "A registry that keeps a blob-descriptor cache (registry:2's stock `cache: blobdescriptor: inmemory`) "
            "accepts a manifest whose stored bytes garbage collection removed, and then cannot serve it: restart "
            "the registry, which clears the cache, and restore again — or push it again from CI: "
            f"{push_command(record)}"
        )
    return "; ".join(problems), hint
