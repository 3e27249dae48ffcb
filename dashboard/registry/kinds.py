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


#: What a user pulls each kind with: docker (or any container runtime) for images and multi-arch
#: indexes, Helm for charts, ORAS for every other OCI artifact (signatures, SBOMs, attestations…),
#: which `docker pull` refuses. A kind not known yet ("") or unrecognised is offered as an image.
DOCKER, HELM_TOOL, ORAS = "docker", "helm", "oras"
_ARTIFACT_KINDS = frozenset({SIGNATURE, SBOM, ATTESTATION, ARTIFACT})


def pull_tool(kind: str) -> str:
    """"docker", "helm" or "oras": the tool that pulls a manifest of this kind."""
    if kind == HELM:
        return HELM_TOOL
    return ORAS if kind in _ARTIFACT_KINDS else DOCKER


def repository_pull_tool(found: set[str] | list[str] | tuple[str, ...]) -> str:
    """The tool for a repository whose tags have these kinds: one that is not docker only when
    every kind agrees on it (a repository of charts), else docker."""
    tools = {pull_tool(kind) for kind in found if kind}
    return tools.pop() if len(tools) == 1 else DOCKER
