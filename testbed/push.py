"""Build image/artifact bytes deterministically and push them with the raw Distribution HTTP API.

Builders (``tar_gz_layer``, ``image_config``, ``build_image``, ``build_manifest``, ``build_index``)
are pure: the same arguments give the same bytes and therefore the same digests.  The push
helpers talk plain HTTP to the registry so tests see exactly what a registry stores.

Size convention: ``Image.size`` is the sum of the *compressed* layer sizes as listed in the
manifest (what ``docker manifest inspect``-based UIs and Docker Hub call "compressed size");
the config blob is not included, it is available as ``Image.config_size``.  For an index,
``size`` is the sum of its children's ``size``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

__all__ = [
    "MT_DOCKER_MANIFEST", "MT_DOCKER_LIST", "MT_DOCKER_CONFIG", "MT_DOCKER_LAYER",
    "MT_OCI_MANIFEST", "MT_OCI_INDEX", "MT_OCI_CONFIG", "MT_OCI_LAYER", "MT_OCI_EMPTY",
    "MANIFEST_ACCEPT", "TIMEOUT", "DEFAULT_CREATED", "LAYER_MTIME",
    "Blob", "HistoryStep", "Image", "PushError",
    "sha256_digest", "canonical_json", "blob", "tar_gz_layer", "image_config",
    "build_image", "build_manifest", "build_index", "parse_platform", "platform_string",
    "fake_signature", "get_session", "blob_exists", "upload_blob", "put_manifest", "head_manifest",
    "get_manifest", "get_blob", "fetch_image", "delete_manifest", "mount_blob", "push_image",
]

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"

# Without an Accept header 2.8.2 down-converts schema2 to a signed schema1 (different digest)
# and hides OCI manifests, so every manifest request must offer all four modern types.
MANIFEST_ACCEPT = ", ".join([MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST])

TIMEOUT = (5, 60)  # (connect, read) seconds for every request in the test bed
DEFAULT_CREATED = "2024-01-01T00:00:00Z"
LAYER_MTIME = 1_700_000_000  # fixed tar member mtime so layer digests don't depend on the clock

_INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)


class PushError(RuntimeError):
    pass


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    # Compact, key-order-as-given JSON: deterministic, and what most tools emit.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Blob:
    """A blob plus how a manifest should describe it."""

    media_type: str
    data: bytes = field(repr=False)
    annotations: Mapping[str, str] | None = field(default=None, hash=False, compare=False)
    diff_id: str | None = None  # sha256 of the uncompressed tar, for image layers only

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


@dataclass(frozen=True)
class HistoryStep:
    """One ``history`` entry of an image config; non-empty steps line up with layers in order."""

    created_by: str
    empty_layer: bool = False
    created: str | None = None  # defaults to the image's created time
    comment: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class Image:
    """A built manifest (image, artifact or index) and everything needed to push and check it."""

    manifest: bytes = field(repr=False)
    media_type: str
    config: Blob | None = None
    layers: tuple[Blob, ...] = ()
    children: tuple[Image, ...] = ()
    platform: str | None = None  # "os/arch[/variant]", carried into an index descriptor
    created: str | None = None
    artifact_type: str | None = None
    subject: str | None = None  # digest of the subject manifest, if any

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def manifest_size(self) -> int:
        return len(self.manifest)

    @property
    def is_index(self) -> bool:
        return self.media_type in _INDEX_TYPES

    @property
    def config_digest(self) -> str | None:
        return self.config.digest if self.config else None

    @property
    def config_media_type(self) -> str | None:
        return self.config.media_type if self.config else None

    @property
    def config_size(self) -> int:
        return self.config.size if self.config else 0

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(b.digest for b in self.layers)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(b.size for b in self.layers)

    @property
    def size(self) -> int:
        """Compressed size: sum of layer sizes (config excluded); an index sums its children."""
        if self.is_index:
            return sum(c.size for c in self.children)
        return sum(self.layer_sizes)

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.manifest_size}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if annotations:
            d["annotations"] = dict(annotations)
        if self.platform:
            d["platform"] = parse_platform(self.platform)
        return d


def parse_platform(platform: str) -> dict[str, str]:
    """``"linux/arm64/v8"`` -> ``{"architecture": "arm64", "os": "linux", "variant": "v8"}``."""
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    d = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        d["variant"] = parts[2]
    return d


def platform_string(p: Mapping[str, Any]) -> str:
    s = f"{p.get('os', '')}/{p.get('architecture', '')}"
    return f"{s}/{p['variant']}" if p.get("variant") else s


# ---------------------------------------------------------------------------------------------
# Builders


def blob(media_type: str, data: bytes | str | Mapping[str, Any] | list[Any],
         annotations: Mapping[str, str] | None = None) -> Blob:
    """A blob from bytes, text, or a JSON-able object (serialised with ``canonical_json``)."""
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = canonical_json(data)
    return Blob(media_type, data, annotations)


def tar_gz_layer(files: Mapping[str, bytes], *, media_type: str = MT_OCI_LAYER,
                 annotations: Mapping[str, str] | None = None) -> Blob:
    """A gzip'ed tar of ``files`` (path -> content) with parent dirs, fixed owners and mtimes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            rel = path.strip("/")
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(_tarinfo(d + "/", tarfile.DIRTYPE, 0o755, 0))
            data = files[path]
            tar.addfile(_tarinfo(rel, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    uncompressed = raw.getvalue()
    # mtime=0 keeps the gzip header free of the current time.
    compressed = gzip.compress(uncompressed, compresslevel=6, mtime=0)
    return Blob(media_type, compressed, annotations, diff_id=sha256_digest(uncompressed))


def _tarinfo(name: str, type_: bytes, mode: int, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.mtime = type_, mode, size, LAYER_MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def image_config(
    *,
    diff_ids: Sequence[str],
    created: str = DEFAULT_CREATED,
    author: str = "",
    platform: str = "linux/amd64",
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = ("/bin/sh",),
    workdir: str = "",
    user: str = "",
    exposed_ports: Iterable[str] = (),
    volumes: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    history: Sequence[HistoryStep] | None = None,
) -> bytes:
    """Image config JSON (Docker and OCI share the shape) whose history lines up with diff_ids."""
    if history is None:
        history = [HistoryStep(f"/bin/sh -c #(nop) ADD file:{d.split(':')[1][:12]} in / ") for d in diff_ids]
        if cmd:
            history.append(HistoryStep(f"/bin/sh -c #(nop)  CMD {json.dumps(list(cmd))}", empty_layer=True))
    non_empty = sum(1 for h in history if not h.empty_layer)
    if non_empty != len(diff_ids):
        # Dashboards zip history with layers; a mismatch would make every test built on it lie.
        raise ValueError(f"history has {non_empty} non-empty steps but there are {len(diff_ids)} layers")
    plat = parse_platform(platform)
    container_config: dict[str, Any] = {
        "User": user,
        "ExposedPorts": {p: {} for p in exposed_ports} or None,
        "Env": list(env),
        "Entrypoint": list(entrypoint) if entrypoint is not None else None,
        "Cmd": list(cmd) if cmd is not None else None,
        "Volumes": {v: {} for v in volumes} or None,
        "WorkingDir": workdir,
        "Labels": dict(labels) if labels else None,
    }
    cfg: dict[str, Any] = {"created": created}
    if author:
        cfg["author"] = author
    cfg["architecture"] = plat["architecture"]
    cfg["os"] = plat["os"]
    if "variant" in plat:
        cfg["variant"] = plat["variant"]
    cfg["config"] = {k: v for k, v in container_config.items() if v is not None}
    cfg["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    cfg["history"] = [
        {k: v for k, v in {
            "created": h.created or created,
            "created_by": h.created_by,
            "author": h.author,
            "comment": h.comment,
            "empty_layer": True if h.empty_layer else None,
        }.items() if v is not None}
        for h in history
    ]
    return canonical_json(cfg)


def build_manifest(
    config: Blob,
    layers: Sequence[Blob],
    *,
    oci: bool = True,
    annotations: Mapping[str, str] | None = None,
    subject: Image | None = None,
    artifact_type: str | None = None,
    platform: str | None = None,
    created: str | None = None,
) -> Image:
    """A single manifest over already-built blobs (use for artifacts: signatures, SBOMs, charts)."""
    if not oci and (annotations or subject or artifact_type):
        raise ValueError("annotations/subject/artifactType exist only in OCI manifests")
    media_type = MT_OCI_MANIFEST if oci else MT_DOCKER_MANIFEST
    m: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        m["artifactType"] = artifact_type
    m["config"] = config.descriptor()
    m["layers"] = [b.descriptor() for b in layers]
    if subject is not None:
        m["subject"] = {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.manifest_size}
    if annotations:
        m["annotations"] = dict(annotations)
    return Image(
        manifest=canonical_json(m),
        media_type=media_type,
        config=config,
        layers=tuple(layers),
        platform=platform,
        created=created,
        artifact_type=artifact_type,
        subject=subject.digest if subject is not None else None,
    )


def build_image(
    layers: Sequence[Mapping[str, bytes]] = ({"hello.txt": b"hello\n"},),
    *,
    oci: bool = True,
    created: str = DEFAULT_CREATED,
    author: str = "",
    platform: str = "linux/amd64",
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = ("/bin/sh",),
    workdir: str = "",
    user: str = "",
    exposed_ports: Iterable[str] = (),
    volumes: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    history: Sequence[HistoryStep] | None = None,
    annotations: Mapping[str, str] | None = None,
    subject: Image | None = None,
    artifact_type: str | None = None,
    config_bytes: bytes | None = None,
    config_media_type: str | None = None,
) -> Image:
    """A runnable-looking image: one tar+gzip layer per ``layers`` entry and a matching config.

    ``config_bytes``/``config_media_type`` override the generated config, for broken images.
    """
    layer_type = MT_OCI_LAYER if oci else MT_DOCKER_LAYER
    blobs = [tar_gz_layer(files, media_type=layer_type) for files in layers]
    custom_config = config_bytes is not None
    if config_bytes is None:
        config_bytes = image_config(
            diff_ids=[b.diff_id or "" for b in blobs], created=created, author=author, platform=platform,
            env=env, entrypoint=entrypoint, cmd=cmd, workdir=workdir, user=user,
            exposed_ports=exposed_ports, volumes=volumes, labels=labels, history=history,
        )
    config = Blob(config_media_type or (MT_OCI_CONFIG if oci else MT_DOCKER_CONFIG), config_bytes)
    # A custom config says nothing we can vouch for, so don't claim a platform or created time.
    return build_manifest(
        config, blobs, oci=oci, annotations=annotations, subject=subject, artifact_type=artifact_type,
        platform=None if custom_config else platform, created=None if custom_config else created,
    )


def build_index(
    children: Sequence[Image],
    *,
    oci: bool = True,
    annotations: Mapping[str, str] | None = None,
    child_annotations: Mapping[str, Mapping[str, str]] | None = None,
    artifact_type: str | None = None,
) -> Image:
    """An OCI index (``oci=True``) or Docker manifest list over ``children``.

    Each child's ``platform`` goes into its descriptor; ``child_annotations`` maps a child digest
    to descriptor annotations (e.g. buildx's attestation-manifest markers).
    """
    if not oci:
        if annotations or child_annotations or artifact_type:
            raise ValueError("annotations/artifactType exist only in OCI indexes")
        if any(c.platform is None for c in children):
            raise ValueError("every Docker manifest list entry needs a platform")
    media_type = MT_OCI_INDEX if oci else MT_DOCKER_LIST
    m: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        m["artifactType"] = artifact_type
    m["manifests"] = [c.descriptor((child_annotations or {}).get(c.digest)) for c in children]
    if annotations:
        m["annotations"] = dict(annotations)
    return Image(manifest=canonical_json(m), media_type=media_type, children=tuple(children),
                 artifact_type=artifact_type)


def fake_signature(seed: str) -> str:
    """A base64 string shaped like a cosign signature; not a real signature."""
    return base64.b64encode(hashlib.sha512(seed.encode()).digest()).decode()


# ---------------------------------------------------------------------------------------------
# HTTP push helpers

_local = threading.local()


def get_session() -> requests.Session:
    """A per-thread Session: requests.Session isn't documented as thread-safe, and the seeders
    push from thread pools."""
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


def _s(session: requests.Session | None) -> requests.Session:
    return session if session is not None else get_session()


def _fail(what: str, r: requests.Response) -> PushError:
    return PushError(f"{what}: HTTP {r.status_code} {r.request.method} {r.url}\n{r.text[:2000]}")


def blob_exists(url: str, repo: str, digest: str, *, session: requests.Session | None = None) -> bool:
    r = _s(session).head(f"{url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
    if r.status_code == 200:
        return True
    if r.status_code == 404:
        return False
    raise _fail(f"HEAD blob {digest}", r)


def upload_blob(url: str, repo: str, data: bytes, *, session: requests.Session | None = None,
                check_exists: bool = True) -> str:
    """Monolithic upload (POST then PUT ?digest=); skipped when the repo already links the blob."""
    s = _s(session)
    digest = sha256_digest(data)
    if check_exists and blob_exists(url, repo, digest, session=s):
        return digest
    r = s.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    if r.status_code != 202:
        raise _fail(f"start upload in {repo}", r)
    location = r.headers["Location"]
    if location.startswith("/"):
        location = url + location
    # 2.8.2 puts its _state in the Location query string, so append rather than replace.
    sep = "&" if "?" in location else "?"
    r = s.put(f"{location}{sep}digest={digest}", data=data,
              headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
    if r.status_code != 201:
        raise _fail(f"finish upload of {digest} in {repo}", r)
    got = r.headers.get("Docker-Content-Digest")
    if got and got != digest:
        raise PushError(f"registry stored blob as {got}, expected {digest}")
    return digest


def mount_blob(url: str, repo: str, digest: str, from_repo: str, *,
               session: requests.Session | None = None) -> bool:
    """Cross-repository mount (one request instead of HEAD+POST+PUT); False if the registry
    started a normal upload instead, which happens when ``from_repo`` lacks the blob."""
    r = _s(session).post(f"{url}/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": from_repo},
                         timeout=TIMEOUT)
    if r.status_code == 201:
        return True
    if r.status_code == 202:
        # An upload session was opened; cancel it so it doesn't linger in _uploads.
        location = r.headers["Location"]
        _s(session).delete(url + location if location.startswith("/") else location, timeout=TIMEOUT)
        return False
    raise _fail(f"mount {digest} from {from_repo} into {repo}", r)


def put_manifest(url: str, repo: str, reference: str, body: bytes, media_type: str, *,
                 session: requests.Session | None = None) -> str:
    """PUT a manifest by tag or digest; returns its digest after checking the registry agrees."""
    r = _s(session).put(f"{url}/v2/{repo}/manifests/{reference}", data=body,
                        headers={"Content-Type": media_type}, timeout=TIMEOUT)
    if r.status_code != 201:
        raise _fail(f"PUT manifest {repo}:{reference}", r)
    expected = sha256_digest(body)
    got = r.headers.get("Docker-Content-Digest")
    if got != expected:
        raise PushError(f"registry reports digest {got} for {repo}:{reference}, sent bytes hash to {expected}")
    return expected


def head_manifest(url: str, repo: str, reference: str, *,
                  session: requests.Session | None = None) -> tuple[str, str] | None:
    """(digest, media type) of a manifest, asking with all four Accept types; None on 404."""
    r = _s(session).head(f"{url}/v2/{repo}/manifests/{reference}",
                         headers={"Accept": MANIFEST_ACCEPT}, timeout=TIMEOUT)
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise _fail(f"HEAD manifest {repo}:{reference}", r)
    return r.headers["Docker-Content-Digest"], r.headers["Content-Type"]


def get_manifest(url: str, repo: str, reference: str, *,
                 session: requests.Session | None = None) -> tuple[bytes, str]:
    """(raw bytes, media type) of a manifest, asking with all four Accept types."""
    r = _s(session).get(f"{url}/v2/{repo}/manifests/{reference}",
                        headers={"Accept": MANIFEST_ACCEPT}, timeout=TIMEOUT)
    if r.status_code != 200:
        raise _fail(f"GET manifest {repo}:{reference}", r)
    return r.content, r.headers["Content-Type"]


def get_blob(url: str, repo: str, digest: str, *, session: requests.Session | None = None) -> bytes:
    r = _s(session).get(f"{url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
    if r.status_code != 200:
        raise _fail(f"GET blob {repo}@{digest}", r)
    return r.content


def delete_manifest(url: str, repo: str, digest: str, *, session: requests.Session | None = None) -> None:
    """DELETE by digest (2.8.2 refuses tags); also untags every tag pointing at it."""
    if not digest.startswith("sha256:"):
        raise ValueError("delete_manifest needs a digest, not a tag")
    r = _s(session).delete(f"{url}/v2/{repo}/manifests/{digest}", timeout=TIMEOUT)
    if r.status_code != 202:
        raise _fail(f"DELETE manifest {repo}@{digest}", r)


def push_image(url: str, repo: str, image: Image, tag: str | None = None, *,
               session: requests.Session | None = None, mount_from: str | None = None) -> str:
    """Push blobs (or, for an index, each child by digest) then the manifest by ``tag`` or digest.

    Children go first because 2.8.2 rejects an index whose manifests it doesn't have.
    ``mount_from`` names a repo that already has the blobs, to mount rather than upload them.
    """
    s = _s(session)
    for child in image.children:
        push_image(url, repo, child, session=s, mount_from=mount_from)
    seen: set[str] = set()
    for b in ((image.config,) if image.config else ()) + image.layers:
        if b.digest not in seen:
            seen.add(b.digest)
            if not (mount_from and mount_blob(url, repo, b.digest, mount_from, session=s)):
                upload_blob(url, repo, b.data, session=s)
    return put_manifest(url, repo, tag or image.digest, image.manifest, image.media_type, session=s)


def fetch_image(url: str, repo: str, reference: str, *, session: requests.Session | None = None,
                platform: str | None = None) -> Image:
    """Read a pushed manifest (and its config/layers, or children) back into an ``Image``.

    Used for content pushed by other tools (skopeo) so its facts come from the registry.
    Layers are downloaded too, so only use it on small images.
    """
    s = _s(session)
    body, media_type = get_manifest(url, repo, reference, session=s)
    m = json.loads(body)
    if media_type in _INDEX_TYPES:
        children = tuple(
            fetch_image(url, repo, d["digest"], session=s,
                        platform=platform_string(d["platform"]) if d.get("platform") else None)
            for d in m.get("manifests", [])
        )
        return Image(manifest=body, media_type=media_type, children=children,
                     artifact_type=m.get("artifactType"))
    c = m["config"]
    config = Blob(c["mediaType"], get_blob(url, repo, c["digest"], session=s), c.get("annotations"))
    layers = tuple(Blob(d["mediaType"], get_blob(url, repo, d["digest"], session=s), d.get("annotations"))
                   for d in m.get("layers", []))
    created = None
    try:
        cfg = json.loads(config.data)
        created = cfg.get("created")
        if platform is None and cfg.get("os") and cfg.get("architecture"):
            platform = platform_string(cfg)
    except ValueError:
        pass  # a non-JSON config is legal as far as the registry cares
    return Image(manifest=body, media_type=media_type, config=config, layers=layers, platform=platform,
                 created=created, artifact_type=m.get("artifactType"),
                 subject=(m.get("subject") or {}).get("digest"))
