from __future__ import annotations

from django import template

from ..registry import kinds
from ..registry.names import is_digest, is_name, is_tag

register = template.Library()
# What a hostile registry lists is shown, but goes into a URL only when its grammar allows.
register.filter("is_name", is_name)
register.filter("is_tag", is_tag)
register.filter("is_digest", is_digest)


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
def pull_tool(kind: str) -> str:
    """docker, helm or oras: what pulls a manifest of this kind (dashboard.registry.kinds)."""
    return kinds.pull_tool(kind if isinstance(kind, str) else "")


@register.filter
def kind_class(kind: str) -> str:
    return "kind-" + (kind or "none").replace(" ", "-")


@register.filter
def get_item(mapping: object, key: str) -> object:
    try:
        return mapping[key]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return ""
