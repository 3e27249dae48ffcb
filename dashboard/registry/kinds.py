"""What a manifest *is*, from its media types: image, index, Helm chart, signature, SBOM…"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import models as m

if TYPE_CHECKING:
    from .models import Manifest

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


def classify(manifest: Manifest) -> str:
    if manifest.problem and not (manifest.is_index or manifest.is_image_manifest):
        return UNKNOWN
    if manifest.is_index:
        if manifest.artifact_type:
            return _by_type(manifest.artifact_type) or ARTIFACT
        return INDEX
    if not manifest.is_image_manifest:
        return UNKNOWN
    types = [manifest.artifact_type]
    if manifest.config is not None:
        types.append(manifest.config.media_type)
    types.extend(layer.media_type for layer in manifest.layers)
    for media_type in types:
        kind = _by_type(media_type)
        if kind:
            return kind
    if manifest.config is not None and manifest.config.media_type in m.IMAGE_CONFIG_TYPES:
        return IMAGE
    return ARTIFACT


def _by_type(media_type: str) -> str:
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
