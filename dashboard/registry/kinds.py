"""What a manifest *is*: the kinds (image, index, Helm chart, signature, SBOM…) and the media types
that say so. `Manifest.kind` (registry.models) applies them."""

from __future__ import annotations

IMAGE = "image"
INDEX = "index"
HELM = "helm chart"
SIGNATURE = "signature"
SBOM = "sbom"
ATTESTATION = "attestation"
ARTIFACT = "artifact"
UNKNOWN = "unknown"

_SIGNATURE_TYPES = {
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.cncf.notary.signature",
}
_SBOM_TYPES = {
    "application/spdx+json",
    "text/spdx",
    "text/spdx+json",
    "application/vnd.cyclonedx+json",
    "application/vnd.cyclonedx+xml",
    "application/vnd.cyclonedx",
    "application/vnd.syft+json",
    "application/vnd.dev.cosign.artifact.sbom.v1+json",
}
_ATTESTATION_TYPES = {
    "application/vnd.dsse.envelope.v1+json",
    "application/vnd.in-toto+json",
}
_HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"


def by_media_type(media_type: str) -> str:
    """The kind a media type alone says (a signature, an SBOM, …), or ""."""
    if not media_type:
        return ""
    if media_type == _HELM_CONFIG:
        return HELM
    if media_type in _SIGNATURE_TYPES:
        return SIGNATURE
    if media_type in _SBOM_TYPES:
        return SBOM
    if media_type in _ATTESTATION_TYPES:
        return ATTESTATION
    return ""
