"""Registry-side operations behind safe deletion: probe, untag, check and restore.

Django-free like the client. Everything here learns from what the registry answers, never
from a version string:

* `probe_delete` DELETEs a digest nobody can have pushed: 404 means deletion works; 405
  UNSUPPORTED means the registry was started without it; a plain-text 405 means read-only
  (maintenance) mode; 401/403 means our credentials may not delete.
* `untag` removes exactly one tag. Registry 3.x deletes a tag by name (202). 2.8 only
  deletes by digest (400 DIGEST_INVALID for a tag), and a digest DELETE removes *every* tag
  pointing at it, so on 2.8 the tag is first moved to a unique throwaway manifest, which is
  then deleted by its own digest: only that tag moves, and only that tag vanishes.
* `missing_content` / `restore` put a deleted manifest back, byte for byte, with its tags —
  unless garbage collection already removed content it references.
"""

from __future__ import annotations

import json
import secrets
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from . import errors as e
from . import models as m
from .client import RegistryClient, run_bounded
from .names import check_digest, check_name, check_tag
from .parse import digest_of, parse_manifest, verify

__all__ = [
    "EMPTY_JSON", "EMPTY_JSON_DIGEST", "PROBE_DIGEST", "UNTAG_ANNOTATION", "UNTAG_ARTIFACT_TYPE",
    "DeleteSupport", "Untagged", "external_layers", "missing_content", "probe_delete", "restore",
    "throwaway_manifest", "untag",
]

#: A digest no registry can hold a manifest for: the bytes are not even JSON.
PROBE_DIGEST = digest_of(b"registryui delete probe")
#: The throwaway manifest's annotation; its value is a random nonce, so each digest is new.
UNTAG_ANNOTATION = "io.registryui.untag"
UNTAG_ARTIFACT_TYPE = "application/vnd.registryui.untag.v1"
#: The OCI empty descriptor's content (application/vnd.oci.empty.v1+json).
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = digest_of(EMPTY_JSON)

# Layers a client fetches from their `urls`: registries never store them, nor check them.
_EXTERNAL_LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
# Nested indexes deeper than this are not followed (no real image nests more than twice).
_MAX_DEPTH = 8


@dataclass(frozen=True)
class DeleteSupport:
    """Whether the registry lets the dashboard delete, and if not, why (for the page)."""

    enabled: bool
    reason: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class Untagged:
    """One removed tag: where it pointed, and how it was removed ("tag-delete" or "throwaway")."""

    tag: str
    digest: str
    method: str


# -- probing -----------------------------------------------------------------------------


def probe_delete(client: RegistryClient, name: str) -> DeleteSupport:
    """Ask the registry whether deleting in `name` works, by deleting something that can't exist.

    Nothing is deleted. Transport failures and unexpected answers are raised, not reported:
    they say nothing about deletion.
    """
    support, _ = _probe(client, name)
    return support


def _probe(client: RegistryClient, name: str) -> tuple[DeleteSupport, e.RegistryError | None]:
    check_name(name)
    try:
        client.delete_manifest(name, PROBE_DIGEST)
    except e.NotFound:  # MANIFEST_UNKNOWN (2.8, 3.x), NAME_UNKNOWN: the DELETE got as far as the lookup
        return DeleteSupport(enabled=True), None
    except e.UnsupportedOperation as exc:
        return _unsupported(client, exc), exc
    except e.Unauthorized as exc:
        return DeleteSupport(enabled=False, reason=_permission_reason(client, name, exc)), exc
    # 2xx for content nobody can have pushed: deletion evidently works.
    return DeleteSupport(enabled=True), None


def _unsupported(client: RegistryClient, exc: e.UnsupportedOperation) -> DeleteSupport:
    where = client.base_url
    if exc.code == "UNSUPPORTED":
        return DeleteSupport(enabled=False, reason=(
            f"The registry at {where} was started without deletion: it answers {exc.status} UNSUPPORTED "
            "to DELETE. To enable it, set REGISTRY_STORAGE_DELETE_ENABLED=true in the registry's "
            "environment, or storage.delete.enabled: true (storage: delete: enabled: true) in its "
            "config.yml, and restart the registry."))
    if exc.code:
        return DeleteSupport(enabled=False, reason=f"The registry at {where} refuses to delete: {exc.message}")
    # distribution's read-only mode has no write methods on its routes at all, so the router
    # itself answers: a plain-text "Method not allowed" without the JSON error body.
    return DeleteSupport(enabled=False, read_only=True, reason=(
        f"The registry at {where} is in read-only (maintenance) mode: it answers 405 to every "
        "write, so nothing can be deleted (or pushed) right now. Its config.yml sets "
        "storage.maintenance.readonly.enabled: true — usually while garbage collection runs. "
        "Try again once the registry is writable."))


def _permission_reason(client: RegistryClient, name: str, exc: e.Unauthorized) -> str:
    who = f"“{client.conf.username}”" if client.conf.username else "(no user configured)"
    return (f"The registry refused to delete in “{name}” ({exc.message}): the dashboard's registry "
            f"credentials {who} lack the delete permission — with token authentication, the "
            f"“delete” action of the scope repository:{name}:delete. Grant it to the dashboard's "
            "user (REGISTRYUI_REGISTRY_USERNAME), or delete with a client that has it.")


def _require_delete(client: RegistryClient, name: str) -> None:
    """Raise, before anything changes, if the registry won't let us delete in `name`."""
    support, cause = _probe(client, name)
    if not support.enabled:
        raise _as_refusal(support, cause) from cause


def _as_refusal(support: DeleteSupport, cause: e.RegistryError | None) -> e.RegistryError:
    if isinstance(cause, e.UnsupportedOperation):
        return e.UnsupportedOperation(support.reason, url=cause.url, status=cause.status, code=cause.code,
                                      detail=cause.detail, body=cause.body)
    if isinstance(cause, e.Unauthorized):
        return e.Unauthorized(support.reason, url=cause.url)
    return e.UnsupportedOperation(support.reason)


# -- untagging ---------------------------------------------------------------------------


def untag(client: RegistryClient, name: str, tag: str, *, expected_digest: str | None = None,
          tag_delete: bool | None = None) -> tuple[Untagged, bool]:
    """Remove exactly `tag` from `name`; every other tag, and the manifest, stay.

    `expected_digest`: the digest the user confirmed; if the tag points elsewhere now, raise
    `Conflict` and change nothing. `tag_delete`: None tries DELETE-by-tag first (3.x), False
    goes straight to the throwaway (what a caller remembers for a 2.8 registry), True only
    tries the tag DELETE.

    Returns the result and whether DELETE-by-tag worked (False: remember it for this registry
    and pass tag_delete=False next time).

    Deletion switched off (405 UNSUPPORTED) or read-only mode raise `UnsupportedOperation`,
    missing permission `Unauthorized`, in every case before the tag changes. If a step of the
    throwaway path fails after the tag was moved, the tag is put back where it was.
    """
    check_name(name)
    check_tag(tag)
    if expected_digest is not None:
        check_digest(expected_digest)
    current = client.head_manifest(name, tag).digest
    if expected_digest is not None and current != expected_digest:
        raise e.Conflict(
            f"{name}:{tag} no longer points at {expected_digest} — it was pushed again and now points at "
            f"{current}. Nothing was removed; look at the tag again and confirm anew.",
            expected=expected_digest, actual=current)
    if tag_delete is not False:
        try:
            client.delete_tag(name, tag)
            return Untagged(tag=tag, digest=current, method="tag-delete"), True
        except e.UnsupportedOperation as exc:
            if exc.status == 405:
                # 405 UNSUPPORTED: deletion is off; a plain 405: read-only. Neither is about tags.
                raise _as_refusal(_unsupported(client, exc), exc) from exc
            if tag_delete:  # an UNSUPPORTED code on another status: this operation, not deletion
                raise
        except e.RegistryAPIError as exc:
            if tag_delete or not _tag_delete_unsupported(exc):
                raise
    else:
        _require_delete(client, name)
    _untag_with_throwaway(client, name, tag, current)
    return Untagged(tag=tag, digest=current, method="throwaway"), False


def _tag_delete_unsupported(exc: e.RegistryAPIError) -> bool:
    # Distribution 2.8 parses the reference of a manifest DELETE as a digest and answers
    # 400 DIGEST_INVALID "provided digest did not match uploaded content" for a tag.
    return exc.status == 400 and exc.code == "DIGEST_INVALID"


def _untag_with_throwaway(client: RegistryClient, name: str, tag: str, current: str) -> None:
    # The exact bytes, to put the tag back if a later step fails.
    original, original_type, _ = client.manifest_bytes(name, current)
    client.upload_blob(name, EMPTY_JSON)
    throwaway = _put_throwaway(client, name, tag)
    try:
        now = client.head_manifest(name, tag).digest
        if now != throwaway:
            # Someone pushed to the tag in between: their push stays. The throwaway, tagged
            # nowhere, goes (its digest is unique, so no other tag can point at it).
            with suppress(e.RegistryError):
                client.delete_manifest(name, throwaway)
            raise e.Conflict(
                f"{name}:{tag} was pushed again while it was being removed; it now points at {now}, "
                "which was left alone. Look at the tag again and confirm anew.",
                expected=throwaway, actual=now)
        client.delete_manifest(name, throwaway)
    except e.Conflict:
        raise
    except e.RegistryError as exc:
        _put_back(client, name, tag, original, original_type, current, throwaway, exc)
        if isinstance(exc, e.UnsupportedOperation) and exc.status == 405:
            raise _as_refusal(_unsupported(client, exc), exc) from exc
        raise


def throwaway_manifest(nonce: str, *, empty_layer: bool = False) -> bytes:
    """A tiny OCI manifest that is unique per nonce: the OCI empty config, no layers (or one
    empty layer, for registries that insist on a layer), and the nonce as an annotation."""
    empty = {"mediaType": m.OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": len(EMPTY_JSON)}
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST}
    if not empty_layer:
        doc["artifactType"] = UNTAG_ARTIFACT_TYPE
    doc |= {"config": empty, "layers": [empty] if empty_layer else [], "annotations": {UNTAG_ANNOTATION: nonce}}
    return json.dumps(doc, separators=(",", ":")).encode()


def _put_throwaway(client: RegistryClient, name: str, tag: str) -> str:
    nonce = secrets.token_hex(16)
    try:
        return client.put_manifest(name, tag, throwaway_manifest(nonce), m.OCI_MANIFEST)
    except e.RegistryAPIError as exc:
        # 2.8 and 3.x take the layer-less artifact; a registry that wants a layer says MANIFEST_INVALID.
        if exc.status != 400 or exc.code != "MANIFEST_INVALID":
            raise
    return client.put_manifest(name, tag, throwaway_manifest(nonce, empty_layer=True), m.OCI_MANIFEST)


def _put_back(client: RegistryClient, name: str, tag: str, original: bytes, original_type: str,
              current: str, throwaway: str, cause: e.RegistryError) -> None:
    try:
        client.put_manifest(name, tag, original, original_type)
    except e.RegistryError as again:
        raise e.RegistryError(
            f"Removing {name}:{tag} failed ({cause}), and putting the tag back failed too ({again}): "
            f"{name}:{tag} now points at the placeholder manifest {throwaway} instead of {current}. "
            f"Push {current} to the tag again, or delete {throwaway}.", url=cause.url) from cause
    # Now tagged nowhere; if deleting is what failed this fails too, which is harmless.
    with suppress(e.RegistryError):
        client.delete_manifest(name, throwaway)


# -- restoring ---------------------------------------------------------------------------


def missing_content(client: RegistryClient, name: str, manifest_bytes: bytes, media_type: str) -> list[str]:
    """Every digest `manifest_bytes` references that `name` no longer has, in manifest order.

    An image: its config and layers (HEAD blob; layers a client fetches from `urls` don't
    count). An index: each child manifest (by digest), and each present child's own content.
    A manifest type we can't read references nothing we could check: the registry decides.
    """
    check_name(name)
    missing: list[str] = []
    _collect_missing(client, name, manifest_bytes, media_type, missing, set(), 0)
    return missing


def _collect_missing(client: RegistryClient, name: str, raw: bytes, media_type: str, missing: list[str],
                     seen: set[str], depth: int) -> None:
    manifest = parse_manifest(raw, media_type=media_type, digest=digest_of(raw))
    if manifest.is_index:
        for child in manifest.manifests:
            if child.digest in seen:
                continue
            seen.add(child.digest)
            try:
                child_raw, child_type, _ = client.manifest_bytes(name, child.digest)
            except e.NotFound:
                missing.append(child.digest)
                continue
            if depth < _MAX_DEPTH:
                _collect_missing(client, name, child_raw, child_type or child.media_type, missing, seen, depth + 1)
        return
    if not manifest.is_image_manifest:
        return
    external = external_layers(raw)
    blobs: list[str] = []
    for d in (manifest.config, *manifest.layers):
        if d is not None and d.digest not in seen and d.digest not in external:
            seen.add(d.digest)
            blobs.append(d.digest)
    results = run_bounded(lambda digest: client.head_blob(name, digest), blobs, client.conf.pool_size)
    for digest, result in zip(blobs, results, strict=True):
        if isinstance(result, e.NotFound):
            missing.append(digest)
        elif isinstance(result, BaseException):
            raise result


def external_layers(raw: bytes) -> set[str]:
    """The digests of layers a client fetches from their `urls` (the registry never has them)."""
    try:
        layers = json.loads(raw).get("layers")
    except (ValueError, AttributeError, RecursionError):
        return set()
    return {layer["digest"] for layer in layers or [] if isinstance(layer, dict)
            and layer.get("mediaType") in _EXTERNAL_LAYER_TYPES and layer.get("urls")
            and isinstance(layer.get("digest"), str)} if isinstance(layers, list) else set()


def restore(client: RegistryClient, name: str, manifest_bytes: bytes, media_type: str, digest: str,
            tags: list[str], *, checked: bool = False) -> None:
    """Put a deleted manifest back, byte for byte, by digest and under every tag in `tags`.

    Raises `NotRestorable` (nothing pushed) if garbage collection removed content it
    references; `checked`: the caller has just checked that itself. A tag that was pushed
    again since is re-pointed at this manifest.
    """
    check_name(name)
    check_digest(digest)
    verify(manifest_bytes, digest, what=f"the manifest to restore to {name}")
    wanted = list(dict.fromkeys(tags))
    for tag in wanted:
        check_tag(tag)
    missing = [] if checked else missing_content(client, name, manifest_bytes, media_type)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise e.NotRestorable(
            f"{name}@{digest} can no longer be restored: the registry's garbage collection has removed "
            f"{len(missing)} of the blobs/manifests it references ({shown}). Only pushing the image again "
            "brings it back.", missing=missing)
    got = client.put_manifest(name, digest, manifest_bytes, media_type)
    if got != digest:
        raise e.IntegrityError(f"the registry stored the restored manifest as {got}, not {digest}",
                               expected=digest, actual=got)
    for tag in wanted:
        got = client.put_manifest(name, tag, manifest_bytes, media_type)
        if got.split(":", 1)[0] == digest.split(":", 1)[0] and got != digest:
            raise e.IntegrityError(f"the registry stored {name}:{tag} as {got}, not {digest}",
                                   expected=digest, actual=got)
