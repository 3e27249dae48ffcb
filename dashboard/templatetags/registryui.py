from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def short_digest(digest: str) -> str:
    """sha256:0123456789ab… as people say it: the first 12 hex digits."""
    if not isinstance(digest, str):
        return ""
    return digest.split(":", 1)[-1][:12]


@register.filter
def hexpart(digest: str) -> str:
    return digest.split(":", 1)[-1] if isinstance(digest, str) else ""


KIND_LABELS = {
    "image": "image",
    "index": "multi-arch",
    "helm chart": "helm chart",
    "signature": "signature",
    "sbom": "SBOM",
    "attestation": "attestation",
    "referrers": "referrer",
    "artifact": "artifact",
    "unknown": "unknown",
}


@register.filter
def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind or "—")


@register.filter
def kind_class(kind: str) -> str:
    return "kind-" + (kind or "none").replace(" ", "-")


@register.filter
def get_item(mapping: object, key: str) -> object:
    try:
        return mapping[key]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return ""
