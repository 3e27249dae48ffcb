"""Push the content a registry dashboard must be able to show, and return what was pushed.

``seed_standard`` returns a ``Seeded`` of *expected facts* computed from the bytes actually
sent (or, for the skopeo-pushed image, read back from the registry), so tests never hard-code
digests, sizes or timestamps.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import push as p
from .push import HistoryStep, Image
from .server import RegistryServer

__all__ = [
    "Kind", "ManifestFact", "Attachment", "Seeded", "SeedError", "SeededRegistry", "start_seeded",
    "seed_standard", "seed_many_repos", "seed_many_tags", "tool_binaries",
    "REPO_ALPINE", "REPO_WEB", "REPO_MULTI", "REPO_CHART", "REPO_GONE", "REPO_BAD_CONFIG",
    "REPO_BAD_MEDIATYPE", "BULK_PREFIX", "BULK_COUNT", "XSS_LABEL", "XSS_HISTORY",
    "MT_HELM_CONFIG", "MT_HELM_CHART", "MT_COSIGN_SIMPLESIGNING", "MT_SPDX_JSON", "MT_DSSE",
    "MT_IN_TOTO", "MT_UNKNOWN_CONFIG",
]

REPO_ALPINE = "library/alpine"
REPO_WEB = "acme/web"
REPO_MULTI = "acme/multi"
REPO_CHART = "acme/charts/mychart"
REPO_GONE = "acme/gone"
REPO_BAD_CONFIG = "bad/config"
REPO_BAD_MEDIATYPE = "bad/mediatype"
BULK_PREFIX = "bulk"
BULK_COUNT = 120  # > 100 so the catalog needs a second page at n=100

XSS_LABEL = "<script>alert(1)</script>"
XSS_HISTORY = '/bin/sh -c echo "<b>bold</b><img src=x onerror=alert(1)>" > /app/motd'

MT_HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
MT_HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MT_COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
MT_SPDX_JSON = "application/spdx+json"
MT_DSSE = "application/vnd.dsse.envelope.v1+json"
MT_IN_TOTO = "application/vnd.in-toto+json"
MT_UNKNOWN_CONFIG = "application/x-unknown"

SUBPROCESS_TIMEOUT_S = 120
WORKERS = 8


class Kind:
    """What the seed meant each manifest to be; a dashboard's classifier should agree."""

    IMAGE = "image"
    INDEX = "index"  # OCI image index
    MANIFEST_LIST = "manifest-list"  # Docker manifest list
    ATTESTATION_MANIFEST = "attestation-manifest"  # buildx unknown/unknown child of an index
    HELM_CHART = "helm-chart"
    SIGNATURE = "signature"  # cosign .sig tag
    SBOM = "sbom"  # cosign .sbom tag
    ATTESTATION = "attestation"  # cosign .att tag
    REFERRERS_INDEX = "referrers-index"  # OCI 1.1 referrers fallback tag sha256-<hex>
    ARTIFACT = "artifact"  # any other OCI artifact (e.g. a referrer with subject, unknown config)


class SeedError(RuntimeError):
    pass


@dataclass(frozen=True)
class ManifestFact:
    """Facts about one pushed manifest. ``size`` = sum of compressed layer sizes (config excluded);
    for an index/list it is the sum over its *platform* children (attestation manifests excluded)."""

    digest: str
    media_type: str
    kind: str
    manifest_size: int
    size: int
    config_digest: str | None
    config_media_type: str | None
    config_size: int
    created: str | None  # config "created" (images) or org.opencontainers.image.created (charts)
    platform: str | None  # "os/arch[/variant]" for an image; None for an index
    platforms: tuple[str, ...]  # an image's own platform, or an index's children (minus unknown/unknown)
    layer_digests: tuple[str, ...]
    layer_sizes: tuple[int, ...]
    layer_media_types: tuple[str, ...]
    children: tuple[ManifestFact, ...] = ()
    subject: str | None = None  # digest named by an OCI `subject`
    artifact_type: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Attachment:
    """A tag that hangs off another manifest by naming convention (cosign) or OCI referrers fallback."""

    repo: str
    tag: str
    kind: str
    digest: str  # what the tag points at
    subject_digest: str  # the manifest it is attached to
    subject_tag: str


@dataclass(frozen=True)
class Seeded:
    url: str
    host: str
    repos: tuple[str, ...]  # sorted; exactly what /v2/_catalog must list (acme/gone included)
    tags: Mapping[str, Mapping[str, str]]  # repo -> {tag: digest} as tags/list must show (gone: empty)
    # digest -> facts for every manifest pushed: index children, the untagged referrer and the
    # deleted acme/gone manifest included.
    manifests: Mapping[str, ManifestFact]
    bulk_repos: tuple[str, ...]
    attachments: tuple[Attachment, ...]
    referrer_digest: str  # untagged OCI artifact whose subject is acme/web:1.2.0
    gone_repo: str
    gone_digest: str  # manifest that was pushed as acme/gone:old and then deleted
    gone_tags_status: int  # what 2.8.2 answered to GET /v2/acme/gone/tags/list afterwards
    gone_tags_body: Any  # its parsed JSON body
    seconds: float  # wall time of seed_standard

    def digest(self, repo: str, tag: str) -> str:
        return self.tags[repo][tag]

    def fact(self, repo: str, tag: str) -> ManifestFact:
        return self.manifests[self.tags[repo][tag]]


# ---------------------------------------------------------------------------------------------


def tool_binaries() -> dict[str, str]:
    """Paths of skopeo and umoci, or a SeedError saying how to install what's missing."""
    found, missing = {}, []
    for name in ("skopeo", "umoci"):
        path = shutil.which(name)
        if path:
            found[name] = path
        else:
            missing.append(name)
    if missing:
        raise SeedError(f"{' and '.join(missing)} not on PATH; install with `apt-get install {' '.join(missing)}`")
    return found


def _noise(seed: str, n: int) -> bytes:
    # Incompressible but deterministic, so compressed sizes really differ between tags.
    return random.Random(seed).randbytes(n)


def _fact(img: Image, kind: str, child_kinds: Mapping[str, str] | None = None) -> ManifestFact:
    labels: dict[str, str] = {}
    if img.config is not None and img.config.media_type in (p.MT_OCI_CONFIG, p.MT_DOCKER_CONFIG):
        try:
            labels = dict((json.loads(img.config.data).get("config") or {}).get("Labels") or {})
        except (ValueError, AttributeError):
            pass
    annotations = dict(json.loads(img.manifest).get("annotations") or {})
    created = img.created or annotations.get("org.opencontainers.image.created")
    children = tuple(_fact(c, (child_kinds or {}).get(c.digest, Kind.IMAGE)) for c in img.children)
    real = tuple(c for c in children if c.kind != Kind.ATTESTATION_MANIFEST)
    return ManifestFact(
        digest=img.digest,
        media_type=img.media_type,
        kind=kind,
        manifest_size=img.manifest_size,
        size=sum(c.size for c in real) if img.is_index else img.size,
        config_digest=img.config_digest,
        config_media_type=img.config_media_type,
        config_size=img.config_size,
        created=None if img.is_index else created,
        platform=None if img.is_index else img.platform,
        platforms=tuple(c.platform for c in real if c.platform) if img.is_index
        else ((img.platform,) if img.platform else ()),
        layer_digests=img.layer_digests,
        layer_sizes=img.layer_sizes,
        layer_media_types=tuple(b.media_type for b in img.layers),
        children=children,
        subject=img.subject,
        artifact_type=img.artifact_type,
        labels=labels,
        annotations=annotations,
    )


class _Recorder:
    """Pushes and remembers facts, so the returned Seeded only ever describes real pushes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.tags: dict[str, dict[str, str]] = {}
        self.manifests: dict[str, ManifestFact] = {}

    def record(self, repo: str, tag: str | None, fact: ManifestFact) -> str:
        stack = [fact]
        while stack:
            f = stack.pop()
            self.manifests.setdefault(f.digest, f)
            stack.extend(f.children)
        if tag is not None:
            self.tags.setdefault(repo, {})[tag] = fact.digest
        return fact.digest

    def push(self, repo: str, img: Image, tag: str | None, kind: str,
             child_kinds: Mapping[str, str] | None = None) -> str:
        p.push_image(self.url, repo, img, tag)
        return self.record(repo, tag, _fact(img, kind, child_kinds))


# ---------------------------------------------------------------------------------------------
# library/alpine via umoci + skopeo, so at least one image took the path real tools take.


def _run(cmd: Sequence[str], what: str, cwd: Path) -> str:
    try:
        res = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise SeedError(f"{what} timed out after {SUBPROCESS_TIMEOUT_S}s: {' '.join(cmd)}") from exc
    if res.returncode != 0:
        raise SeedError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n"
                        f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-2000:]}")
    return res.stdout


ALPINE_CREATED = "2024-01-27T00:51:38Z"


def _push_alpine(rec: _Recorder, host: str, workdir: Path) -> str:
    bins = tool_binaries()
    umoci, skopeo = bins["umoci"], bins["skopeo"]
    workdir.mkdir(parents=True, exist_ok=True)
    layout = workdir / "alpine-oci"
    if layout.exists():
        shutil.rmtree(layout)
    src = workdir / "alpine-src"
    src.mkdir(exist_ok=True)
    release = src / "alpine-release"
    release.write_text("3.19.1\n")
    os.utime(release, (p.LAYER_MTIME, p.LAYER_MTIME))  # keeps the layer digest stable across runs
    image = f"{layout}:3.19"
    _run([umoci, "init", "--layout", str(layout)], "umoci init", workdir)
    _run([umoci, "new", "--image", image], "umoci new", workdir)
    _run([umoci, "insert", "--image", image, "--history.created", ALPINE_CREATED,
          "--history.created_by", "/bin/sh -c #(nop) ADD file:alpine-release in /etc/",
          str(release), "/etc/alpine-release"], "umoci insert", workdir)
    _run([umoci, "config", "--image", image, "--created", ALPINE_CREATED,
          "--author", "Alpine Maintainers <alpine@example.invalid>",
          "--architecture", "amd64", "--os", "linux",  # not the host's arch: facts must not vary
          "--config.label", "org.opencontainers.image.title=alpine",
          "--config.label", "org.opencontainers.image.version=3.19.1",
          "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "--config.cmd", "/bin/sh",
          "--history.created", ALPINE_CREATED,
          "--history.created_by", '/bin/sh -c #(nop)  CMD ["/bin/sh"]'], "umoci config", workdir)
    # --insecure-policy: don't depend on the host's /etc/containers/policy.json.
    _run([skopeo, "--insecure-policy", "copy", "--quiet", "--format", "v2s2", "--dest-tls-verify=false",
          f"oci:{layout}:3.19", f"docker://{host}/{REPO_ALPINE}:3.19"], "skopeo copy", workdir)
    head = p.head_manifest(rec.url, REPO_ALPINE, "3.19")
    if head is None:
        raise SeedError(f"skopeo reported success but {REPO_ALPINE}:3.19 is not in the registry")
    img = p.fetch_image(rec.url, REPO_ALPINE, "3.19")
    if img.digest != head[0] or img.media_type != p.MT_DOCKER_MANIFEST:
        raise SeedError(f"unexpected {REPO_ALPINE}:3.19 after skopeo: {head} vs {img.digest} {img.media_type}")
    fact = _fact(img, Kind.IMAGE)
    rec.record(REPO_ALPINE, "3.19", fact)
    # Same bytes under a second tag: two tags, one digest.
    p.put_manifest(rec.url, REPO_ALPINE, "latest", img.manifest, img.media_type)
    rec.record(REPO_ALPINE, "latest", fact)
    return fact.digest


# ---------------------------------------------------------------------------------------------


def _web_image(version: str, created: str, payload: int, extra_layers: int) -> Image:
    layers = [{"app/VERSION": version.encode() + b"\n", "app/blob.bin": _noise(f"web-{version}", payload)}]
    history = [HistoryStep("/bin/sh -c #(nop) ADD dir:app in /app ")]
    for i in range(extra_layers):
        layers.append({f"app/extra-{i}.bin": _noise(f"web-{version}-{i}", payload // 2)})
        history.append(HistoryStep(XSS_HISTORY if i == 0 else f"/bin/sh -c build step {i}"))
    history += [
        HistoryStep('/bin/sh -c #(nop)  EXPOSE 8080/tcp', empty_layer=True),
        HistoryStep('/bin/sh -c #(nop)  ENTRYPOINT ["/app/web"]', empty_layer=True),
        HistoryStep('/bin/sh -c #(nop)  CMD ["--port", "8080"]', empty_layer=True, comment="buildkit.dockerfile.v0"),
    ]
    return p.build_image(
        layers,
        created=created,
        author="ACME Web Team <web@acme.example>",
        entrypoint=["/app/web"],
        cmd=["--port", "8080"],
        workdir="/app",
        user="1000:1000",
        exposed_ports=["8080/tcp"],
        volumes=["/data"],
        env=["PATH=/usr/local/bin:/usr/bin:/bin", f"WEB_VERSION={version}"],
        labels={
            "org.opencontainers.image.title": "acme web",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.source": "https://git.acme.example/web",
            "com.acme.description": XSS_LABEL,
        },
        history=history,
        annotations={"org.opencontainers.image.version": version, "org.opencontainers.image.created": created},
    )


def _cosign_like(layer_type: str, payload: Any, annotations: Mapping[str, str] | None) -> Image:
    layer = p.blob(layer_type, payload, annotations)
    # cosign writes a minimal image config whose diff_ids name its payload layers.
    config = p.blob(p.MT_OCI_CONFIG, {"architecture": "", "os": "", "config": {},
                                      "rootfs": {"type": "layers", "diff_ids": [layer.digest]}})
    return p.build_manifest(config, [layer])


def _seed_web(rec: _Recorder, host: str) -> tuple[list[Attachment], str]:
    """acme/web tags plus cosign-style attachments; returns them and the untagged referrer digest."""
    versions = {  # tag -> (created, random payload bytes, extra layers)
        "1.2.0": ("2023-06-01T08:00:00Z", 3_000, 0),
        "1.9.0": ("2024-03-01T10:00:00Z", 20_000, 1),
        "1.10.0": ("2024-05-15T12:30:00Z", 60_000, 2),
    }
    images = {tag: _web_image(tag, *spec) for tag, spec in versions.items()}
    for tag, img in images.items():
        rec.push(REPO_WEB, img, tag, Kind.IMAGE)
    rec.push(REPO_WEB, images["1.10.0"], "latest", Kind.IMAGE)

    attachments = []
    target = rec.tags[REPO_WEB]["1.10.0"]
    hexd = target.split(":", 1)[1]
    sig_payload = {
        "critical": {"identity": {"docker-reference": f"{host}/{REPO_WEB}"},
                     "image": {"docker-manifest-digest": target},
                     "type": "cosign container image signature"},
        "optional": None,
    }
    dsse = {"payloadType": "application/vnd.in-toto+json",
            "payload": "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSJ9",
            "signatures": [{"keyid": "", "sig": p.fake_signature("att")}]}
    spdx = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "acme-web",
            "dataLicense": "CC0-1.0", "packages": [{"name": "web", "versionInfo": "1.10.0"}]}
    for suffix, kind, img in (
        ("sig", Kind.SIGNATURE, _cosign_like(MT_COSIGN_SIMPLESIGNING, sig_payload,
                                             {"dev.cosignproject.cosign/signature": p.fake_signature(target)})),
        ("sbom", Kind.SBOM, _cosign_like(MT_SPDX_JSON, spdx, None)),
        ("att", Kind.ATTESTATION, _cosign_like(MT_DSSE, dsse, {"predicateType": "https://slsa.dev/provenance/v0.2"})),
    ):
        tag = f"sha256-{hexd}.{suffix}"
        attachments.append(Attachment(REPO_WEB, tag, kind, rec.push(REPO_WEB, img, tag, kind), target, "1.10.0"))

    # OCI 1.1 referrers on a registry without the referrers API (2.8.2): the artifact is pushed
    # by digest and the `sha256-<hex>` tag holds an index listing it (distribution-spec
    # "referrers tag schema").
    subject = images["1.2.0"]
    empty = p.Blob(p.MT_OCI_EMPTY, b"{}")
    sbom = p.build_manifest(
        empty, [p.blob(MT_SPDX_JSON, dict(spdx, packages=[{"name": "web", "versionInfo": "1.2.0"}]))],
        subject=subject, artifact_type=MT_SPDX_JSON,
        annotations={"org.opencontainers.image.created": "2024-06-01T00:00:00Z"},
    )
    rec.push(REPO_WEB, sbom, None, Kind.ARTIFACT)
    ref_index = p.build_index([sbom], child_annotations={
        sbom.digest: {"org.opencontainers.image.created": "2024-06-01T00:00:00Z"}})
    tag = f"sha256-{subject.digest.split(':', 1)[1]}"
    attachments.append(Attachment(REPO_WEB, tag, Kind.REFERRERS_INDEX,
                                  rec.push(REPO_WEB, ref_index, tag, Kind.REFERRERS_INDEX,
                                           {sbom.digest: Kind.ARTIFACT}),
                                  subject.digest, "1.2.0"))
    return attachments, sbom.digest


def _seed_multi(rec: _Recorder) -> None:
    def child(platform: str, payload: int, oci: bool) -> Image:
        return p.build_image(
            [{"usr/bin/multi": _noise(f"multi-{platform}-{oci}", payload)}],
            oci=oci, platform=platform, created="2024-04-01T00:00:00Z",
            labels={"org.opencontainers.image.title": f"multi {platform}"},
            entrypoint=["/usr/bin/multi"], cmd=None,
        )

    amd64, arm64 = child("linux/amd64", 12_000, True), child("linux/arm64/v8", 9_000, True)
    statement = p.blob(MT_IN_TOTO, {"_type": "https://in-toto.io/Statement/v0.1",
                                    "predicateType": "https://slsa.dev/provenance/v0.2",
                                    "subject": [{"name": "acme/multi", "digest": {"sha256": amd64.digest[7:]}}]},
                       {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"})
    att_config = p.blob(p.MT_OCI_CONFIG, {"architecture": "unknown", "os": "unknown", "config": {},
                                          "rootfs": {"type": "layers", "diff_ids": [statement.digest]}})
    att = p.build_manifest(att_config, [statement], platform="unknown/unknown")
    index = p.build_index(
        [amd64, arm64, att],
        child_annotations={att.digest: {"vnd.docker.reference.type": "attestation-manifest",
                                        "vnd.docker.reference.digest": amd64.digest}},
        annotations={"org.opencontainers.image.created": "2024-04-01T00:00:00Z"},
    )
    rec.push(REPO_MULTI, index, "2.0", Kind.INDEX, {att.digest: Kind.ATTESTATION_MANIFEST})

    legacy = p.build_index([child("linux/amd64", 7_000, False), child("linux/arm/v7", 5_000, False)], oci=False)
    rec.push(REPO_MULTI, legacy, "legacy-list", Kind.MANIFEST_LIST)


def _seed_chart(rec: _Recorder) -> None:
    chart_yaml = b"apiVersion: v2\nname: mychart\nversion: 0.1.0\nappVersion: \"1.16.0\"\ntype: application\n"
    content = p.tar_gz_layer({"mychart/Chart.yaml": chart_yaml,
                              "mychart/values.yaml": b"replicaCount: 1\n",
                              "mychart/templates/NOTES.txt": b"Thanks for installing.\n"},
                             media_type=MT_HELM_CHART)
    config = p.blob(MT_HELM_CONFIG, {"name": "mychart", "version": "0.1.0", "description": "A Helm chart for tests",
                                     "apiVersion": "v2", "appVersion": "1.16.0", "type": "application"})
    chart = p.build_manifest(config, [content], annotations={
        "org.opencontainers.image.created": "2024-02-02T02:02:02Z",
        "org.opencontainers.image.title": "mychart",
        "org.opencontainers.image.version": "0.1.0",
        "org.opencontainers.image.description": "A Helm chart for tests",
    })
    rec.push(REPO_CHART, chart, "0.1.0", Kind.HELM_CHART)


def _seed_gone(rec: _Recorder) -> tuple[str, int, Any]:
    img = p.build_image([{"old.txt": b"soon deleted\n"}], created="2022-01-01T00:00:00Z")
    digest = p.push_image(rec.url, REPO_GONE, img, "old")
    rec.manifests.setdefault(digest, _fact(img, Kind.IMAGE))
    p.delete_manifest(rec.url, REPO_GONE, digest)
    r = p.get_session().get(f"{rec.url}/v2/{REPO_GONE}/tags/list", timeout=p.TIMEOUT)
    try:
        body = r.json()
    except ValueError:
        body = r.text
    rec.tags[REPO_GONE] = {}
    return digest, r.status_code, body


def _seed_bad(rec: _Recorder) -> None:
    bad = p.build_image([{"x": b"x"}], oci=False, config_bytes=b"not json{")
    rec.push(REPO_BAD_CONFIG, bad, "latest", Kind.IMAGE)
    unknown = p.build_image([{"y": b"y"}], config_bytes=b'{"hello":"world"}', config_media_type=MT_UNKNOWN_CONFIG)
    rec.push(REPO_BAD_MEDIATYPE, unknown, "v1", Kind.ARTIFACT)


# ---------------------------------------------------------------------------------------------


def _bulk_image() -> Image:
    return p.build_image([{"bulk.txt": b"shared by every bulk repo and tag\n"}], created="2024-01-01T00:00:00Z")


def seed_many_repos(url: str, count: int, prefix: str = BULK_PREFIX) -> dict[str, str]:
    """``count`` repos ``{prefix}/repo-NNNN``, each tagged ``latest`` with one shared image.

    Returns repo -> digest (the same digest everywhere: identical bytes)."""
    img = _bulk_image()
    repos = [f"{prefix}/repo-{i:04d}" for i in range(count)]
    if not repos:
        return {}
    # The first repo gets real uploads; the rest mount its blobs (one request per blob).
    first = p.push_image(url, repos[0], img, "latest")
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        digests = list(pool.map(lambda r: p.push_image(url, r, img, "latest", mount_from=repos[0]), repos[1:]))
    return dict(zip(repos, [first, *digests], strict=True))


def _many_tags_image(layer: p.Blob, i: int, base: datetime) -> Image:
    created = (base + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = p.image_config(diff_ids=[layer.diff_id or ""], created=created,
                            labels={"com.acme.build": str(i)})
    return p.build_manifest(p.Blob(p.MT_OCI_CONFIG, config), [layer], platform="linux/amd64", created=created)


def seed_many_tags(url: str, repo: str, count: int, *, tag_format: str = "v1.{i}.0",
                   base_created: str = "2024-01-01T00:00:00Z") -> dict[str, str]:
    """``count`` tags in ``repo``, each a distinct manifest (own config with created time
    ``base_created + i minutes`` and label ``com.acme.build=i``) sharing one layer.

    Returns tag -> digest. The layer is uploaded once up front so each tag costs only three
    requests (POST+PUT config, PUT manifest)."""
    layer = _bulk_image().layers[0]
    p.upload_blob(url, repo, layer.data)
    base = datetime.strptime(base_created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    def one(i: int) -> tuple[str, str]:
        img = _many_tags_image(layer, i, base)
        assert img.config is not None
        p.upload_blob(url, repo, img.config.data, check_exists=False)
        tag = tag_format.format(i=i)
        return tag, p.put_manifest(url, repo, tag, img.manifest, img.media_type)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(pool.map(one, range(count)))


# ---------------------------------------------------------------------------------------------


def seed_standard(url: str, *, skopeo_workdir: Path) -> Seeded:
    """Push the standard dashboard content into the (empty) registry at ``url``."""
    started = time.monotonic()
    url = url.rstrip("/")
    host = urlsplit(url).netloc
    rec = _Recorder(url)
    _push_alpine(rec, host, Path(skopeo_workdir))
    attachments, referrer = _seed_web(rec, host)
    _seed_multi(rec)
    _seed_chart(rec)
    gone_digest, gone_status, gone_body = _seed_gone(rec)
    _seed_bad(rec)
    bulk = seed_many_repos(url, BULK_COUNT)
    bulk_fact = _fact(_bulk_image(), Kind.IMAGE)
    for repo in bulk:
        rec.record(repo, "latest", bulk_fact)
    return Seeded(
        url=url,
        host=host,
        repos=tuple(sorted(rec.tags)),
        tags={r: dict(sorted(t.items())) for r, t in rec.tags.items()},
        manifests=rec.manifests,
        bulk_repos=tuple(sorted(bulk)),
        attachments=tuple(attachments),
        referrer_digest=referrer,
        gone_repo=REPO_GONE,
        gone_digest=gone_digest,
        gone_tags_status=gone_status,
        gone_tags_body=gone_body,
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class SeededRegistry:
    """A running registry plus the facts of what was seeded into it (the pytest ``registry`` fixture)."""

    server: RegistryServer
    seeded: Seeded

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host


def start_seeded(data_dir: Path, *, port: int | None = None) -> SeededRegistry:
    """Start a registry under ``data_dir`` and run ``seed_standard``; the caller stops ``.server``."""
    server = RegistryServer(Path(data_dir), port=port).start()
    try:
        return SeededRegistry(server, seed_standard(server.url, skopeo_workdir=Path(data_dir) / "skopeo"))
    except BaseException:
        server.stop()
        raise
