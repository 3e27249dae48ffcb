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

_KIND_OF: dict[str, str] = {
    "application/vnd.cncf.helm.config.v1+json": HELM,
    "application/vnd.dev.cosign.simplesigning.v1+json": SIGNATURE,
    "application/vnd.dev.cosign.artifact.sig.v1+json": SIGNATURE,
    "application/vnd.cncf.notary.signature": SIGNATURE,
    "application/spdx+json": SBOM,
    "text/spdx": SBOM,
    "text/spdx+json": SBOM,
    "application/vnd.cyclonedx+json": SBOM,
    "application/vnd.cyclonedx+xml": SBOM,
    "application/vnd.cyclonedx": SBOM,
    "application/vnd.syft+json": SBOM,
    "application/vnd.dev.cosign.artifact.sbom.v1+json": SBOM,
    "application/vnd.dsse.envelope.v1+json": ATTESTATION,
    "application/vnd.in-toto+json": ATTESTATION,
}


def by_media_type(media_type: str) -> str:
    """The kind a media type alone says (a signature, an SBOM, …), or ""."""
    return _KIND_OF.get(media_type, "")
