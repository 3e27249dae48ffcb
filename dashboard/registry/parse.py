"""Bytes from the registry into frozen dataclasses.

Registry content is untrusted: every field is type-checked, and anything that does not
fit becomes a `problem` string the page shows instead of an exception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import takewhile
from types import MappingProxyType
from typing import Any

from . import models as m
from .errors import IntegrityError, MalformedContent
from .names import is_digest


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify(data: bytes, expected: str, *, what: str, url: str = "") -> None:
    algorithm = expected.split(":", 1)[0]
    if algorithm not in ("sha256", "sha512"):
        raise IntegrityError(f"cannot verify {what}: unsupported digest algorithm “{algorithm}”",
                             url=url, expected=expected)
    actual = digest_of(data, algorithm)
    if actual != expected:
        raise IntegrityError(
            f"{what} does not match its digest: expected {expected}, the bytes hash to {actual}",
            url=url, expected=expected, actual=actual,
        )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _str_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        return m.EMPTY
    return MappingProxyType({str(k): v if isinstance(v, str) else json.dumps(v)
                             for k, v in value.items()})


def _str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _keys(value: Any) -> tuple[str, ...]:
    return tuple(sorted(str(k) for k in value)) if isinstance(value, dict) else ()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # Go writes nanoseconds; fromisoformat takes at most microseconds.
    text, dot, rest = value.strip().partition(".")
    if dot:
        frac = "".join(takewhile(str.isdigit, rest))
        text = f"{text}.{frac[:6].ljust(6, '0')}{rest[len(frac):]}"
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # Year 1 is Go's zero time, used by reproducible builds: it means "unknown".
    if when.year <= 1:
        return None
    # A zone-less time would not compare with the others (TypeError when sorting): take it as UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _platform(value: Any) -> m.Platform | None:
    if not isinstance(value, dict):
        return None
    return m.Platform(
        os=_str(value.get("os")),
        architecture=_str(value.get("architecture")),
        variant=_str(value.get("variant")),
        os_version=_str(value.get("os.version")),
    )


def _descriptor(value: Any) -> m.Descriptor | None:
    if not isinstance(value, dict):
        return None
    digest = _str(value.get("digest"))
    if not digest:
        return None
    return m.Descriptor(
        media_type=_str(value.get("mediaType")),
        digest=digest,
        size=_int(value.get("size")),
        annotations=_str_map(value.get("annotations")),
        platform=_platform(value.get("platform")),
        artifact_type=_str(value.get("artifactType")),
    )


def _descriptors(value: Any, problems: list[str], what: str) -> tuple[m.Descriptor, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"“{what}” is not a list")
        return ()
    found = []
    for i, item in enumerate(value):
        d = _descriptor(item)
        if d is None:
            problems.append(f"{what}[{i}] is not a descriptor with a digest")
        elif not is_digest(d.digest):
            # Never let an unverifiable digest reach a URL; say what was skipped instead.
            problems.append(f"{what}[{i}] has an invalid digest “{d.digest[:150]}”")
        else:
            found.append(d)
    return tuple(found)


def _valid_descriptor(value: Any, problems: list[str], what: str) -> m.Descriptor | None:
    if value is None:
        return None
    got = _descriptors([value], problems, what)
    return got[0] if got else None


def parse_manifest(raw: bytes, *, media_type: str, digest: str) -> m.Manifest:
    """Never raises for bad content: a manifest we cannot read says why in `problem`."""
    base = {"raw": raw, "digest": digest, "size": len(raw)}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep nesting
        return m.Manifest(media_type=media_type, problem=f"the manifest is not valid JSON ({exc})", **base)
    if not isinstance(doc, dict):
        return m.Manifest(media_type=media_type, problem="the manifest is not a JSON object", **base)
    declared = _str(doc.get("mediaType"))
    # The header is the registry's word; an OCI manifest may omit mediaType in its body.
    kind = declared or media_type
    if kind not in m.MANIFEST_TYPES:
        if "manifests" in doc and isinstance(doc["manifests"], list):
            kind = m.OCI_INDEX
        elif "config" in doc and "layers" in doc:
            kind = m.OCI_MANIFEST
    problems: list[str] = []
    common = {
        "schema_version": _int(doc.get("schemaVersion")),
        "annotations": _str_map(doc.get("annotations")),
        "subject": _valid_descriptor(doc.get("subject"), problems, "subject"),
        "artifact_type": _str(doc.get("artifactType")),
    }
    if kind in m.INDEX_TYPES:
        children = _descriptors(doc.get("manifests"), problems, "manifests")
        return m.Manifest(media_type=kind, manifests=children, problem="; ".join(problems), **common, **base)
    if kind in m.IMAGE_TYPES:
        config = _valid_descriptor(doc.get("config"), problems, "config")
        if config is None and not problems:
            problems.append("the manifest has no valid config descriptor")
        layers = _descriptors(doc.get("layers"), problems, "layers")
        return m.Manifest(media_type=kind, config=config, layers=layers,
                          problem="; ".join(problems), **common, **base)
    shown = kind or "none"
    return m.Manifest(media_type=kind or media_type,
                      problem=f"unsupported manifest media type “{shown}”", **common, **base)


def parse_config(raw: bytes, *, digest: str) -> m.ImageConfig:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep nesting
        return m.ImageConfig(digest=digest, raw=raw, problem=f"the image config is not valid JSON ({exc})")
    if not isinstance(doc, dict):
        return m.ImageConfig(digest=digest, raw=raw, problem="the image config is not a JSON object")
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    history = tuple(
        m.HistoryEntry(
            created=parse_time(h.get("created")),
            created_by=_str(h.get("created_by")),
            comment=_str(h.get("comment")),
            author=_str(h.get("author")),
            empty_layer=h.get("empty_layer") is True,
        )
        for h in (doc.get("history") if isinstance(doc.get("history"), list) else [])
        if isinstance(h, dict)
    )
    rootfs = doc.get("rootfs") if isinstance(doc.get("rootfs"), dict) else {}
    return m.ImageConfig(
        digest=digest,
        raw=raw,
        created=parse_time(doc.get("created")),
        author=_str(doc.get("author")),
        os=_str(doc.get("os")),
        architecture=_str(doc.get("architecture")),
        variant=_str(doc.get("variant")),
        env=_str_tuple(cfg.get("Env")),
        entrypoint=_str_tuple(cfg.get("Entrypoint")),
        cmd=_str_tuple(cfg.get("Cmd")),
        working_dir=_str(cfg.get("WorkingDir")),
        user=_str(cfg.get("User")),
        exposed_ports=_keys(cfg.get("ExposedPorts")),
        volumes=_keys(cfg.get("Volumes")),
        labels=_str_map(cfg.get("Labels")),
        stop_signal=_str(cfg.get("StopSignal")),
        history=history,
        diff_ids=_str_tuple(rootfs.get("diff_ids")),
    )


def parse_json_object(raw: bytes, *, what: str, url: str = "") -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep nesting
        raise MalformedContent(f"{what} from {url} is not valid JSON ({exc})", url=url) from exc
    if not isinstance(doc, dict):
        raise MalformedContent(f"{what} from {url} is not a JSON object", url=url)
    return doc
