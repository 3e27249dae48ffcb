"""The distribution reference grammar, so only valid names ever reach a registry URL.

From distribution/reference/regexp.go (3.x, which also accepts 2.8's names).
"""

from __future__ import annotations

import re

from .errors import InvalidReference

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
# Only algorithms we can verify; anything else could not be trusted anyway.
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
NAME_MAX = 255


def is_name(value: str) -> bool:
    return len(value) <= NAME_MAX and NAME_RE.fullmatch(value) is not None


def is_tag(value: str) -> bool:
    return TAG_RE.fullmatch(value) is not None


def is_digest(value: str) -> bool:
    return DIGEST_RE.fullmatch(value) is not None


def _checked(value: str, valid: bool, what: str) -> str:
    if not valid:
        raise InvalidReference(f"“{value[:300]}” is {what}")
    return value


def check_name(value: str) -> str:
    return _checked(value, is_name(value), "not a valid repository name")


def check_reference(value: str) -> str:
    return _checked(value, is_tag(value) or is_digest(value), "neither a valid tag nor a sha256/sha512 digest")


def check_tag(value: str) -> str:
    return _checked(value, is_tag(value), "not a valid tag")


def check_digest(value: str) -> str:
    return _checked(value, is_digest(value), "not a valid sha256/sha512 digest")


_ATTACHMENT_RE = re.compile(r"(sha256)-([a-f0-9]{64})(?:\.(sig|att|sbom))?")


def attachment_target(tag: str) -> tuple[str, str] | None:
    """For cosign / OCI referrers-fallback tags, the digest they attach to and their kind.

    `sha256-<hex>` is the OCI 1.1 referrers tag schema; `.sig`, `.att`, `.sbom` are cosign's.
    """
    m = _ATTACHMENT_RE.fullmatch(tag)
    if not m:
        return None
    kind = {"sig": "signature", "att": "attestation", "sbom": "sbom", None: "referrers"}[m.group(3)]
    return f"{m.group(1)}:{m.group(2)}", kind
