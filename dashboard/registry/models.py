"""Typed, frozen views of what a registry serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from . import kinds

# The four manifest types a modern registry serves. Asking for fewer makes 2.8 answer
# 404 or silently convert to schema1, whose digest differs from the stored one.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES: tuple[str, ...] = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
IMAGE_CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class RegistryConfig:
    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    ca_bundle: str = ""
    insecure: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 16
    user_agent: str = "registryui"


@dataclass(frozen=True)
class Platform:
    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p) or "unknown"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = EMPTY
    platform: Platform | None = None
    artifact_type: str = ""

    @property
    def is_attestation(self) -> bool:
        """buildx puts provenance/SBOM manifests into an index as platform unknown/unknown."""
        return self.annotations.get("vnd.docker.reference.type") == "attestation-manifest"


@dataclass(frozen=True)
class Ping:
    api_version: str
    latency_ms: float


@dataclass(frozen=True)
class ManifestRef:
    """What a HEAD tells: enough to resolve a tag without downloading it."""

    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """An image manifest, an index, or something we cannot interpret (kind == 'unknown')."""

    media_type: str
    digest: str
    size: int
    raw: bytes
    schema_version: int = 2
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    annotations: Mapping[str, str] = EMPTY
    subject: Descriptor | None = None
    artifact_type: str = ""
    #: Why the manifest could not be fully understood, for the page to say.
    problem: str = ""

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def is_image_manifest(self) -> bool:
        return self.media_type in IMAGE_TYPES

    @property
    def layers_size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def kind(self) -> str:
        if self.is_index:
            return (kinds.by_media_type(self.artifact_type) or kinds.ARTIFACT) if self.artifact_type else kinds.INDEX
        if not self.is_image_manifest:
            return kinds.UNKNOWN
        config_type = self.config.media_type if self.config is not None else ""
        for media_type in (self.artifact_type, config_type, *(layer.media_type for layer in self.layers)):
            if kind := kinds.by_media_type(media_type):
                return kind
        return kinds.IMAGE if config_type in IMAGE_CONFIG_TYPES else kinds.ARTIFACT


@dataclass(frozen=True)
class HistoryEntry:
    created: datetime | None
    created_by: str
    comment: str = ""
    author: str = ""
    empty_layer: bool = False


@dataclass(frozen=True)
class ImageConfig:
    digest: str
    raw: bytes
    created: datetime | None = None
    author: str = ""
    os: str = ""
    architecture: str = ""
    variant: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = EMPTY
    history: tuple[HistoryEntry, ...] = ()
    problem: str = ""
    stop_signal: str = ""
    diff_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    media_type: str
