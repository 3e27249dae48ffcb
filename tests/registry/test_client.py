"""The registry client against a real Distribution 2.8.2 registry seeded with known content.

Every expected value comes from ``registry.seeded`` (what the test bed pushed), never from a
second read through the client under test. No Django, no database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from dashboard.registry import RegistryClient, kinds
from dashboard.registry import errors as e
from dashboard.registry import models as m
from dashboard.registry.models import RegistryConfig
from testbed import Kind, ManifestFact, RegistryServer, SeededRegistry
from testbed import push as p
from testbed.seed import (
    REPO_ALPINE,
    REPO_BAD_CONFIG,
    REPO_BAD_MEDIATYPE,
    REPO_CHART,
    REPO_MULTI,
    REPO_WEB,
    XSS_HISTORY,
    XSS_LABEL,
)
from tests.helpers.servers import QuietHandler, serving

MISSING_DIGEST = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def client(registry: SeededRegistry) -> Iterator[RegistryClient]:
    c = RegistryClient(RegistryConfig(url=registry.url))
    yield c
    c.close()


def _manifests_by_repo(registry: SeededRegistry) -> dict[str, tuple[str, ManifestFact]]:
    """digest -> (a repo that holds it, its fact), for every tagged manifest and its children."""
    seeded = registry.seeded
    found: dict[str, tuple[str, ManifestFact]] = {}
    for repo, tags in seeded.tags.items():
        stack = [seeded.manifests[d] for d in tags.values()]
        while stack:
            fact = stack.pop()
            found.setdefault(fact.digest, (repo, fact))
            stack.extend(fact.children)
    return found


def _all_tags(registry: SeededRegistry) -> list[tuple[str, str, ManifestFact]]:
    s = registry.seeded
    return [(repo, tag, s.manifests[d]) for repo, tags in s.tags.items() for tag, d in tags.items()]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- ping and listing ------------------------------------------------------------------------


def test_ping__real_registry__api_version_registry_2_0(client: RegistryClient) -> None:
    ping = client.ping()
    assert ping.api_version == "registry/2.0"
    assert ping.latency_ms >= 0


def test_catalog__default_page_size__follows_link_pages_to_every_seeded_repo(
        client: RegistryClient, registry: SeededRegistry) -> None:
    repos = client.catalog()
    # 2.8.2 caps a page at n=100, so getting all of them proves the Link header was followed.
    assert len(registry.seeded.repos) > 100
    assert repos == list(registry.seeded.repos)


def test_catalog__page_size_10__still_gets_every_repo_once(client: RegistryClient, registry: SeededRegistry) -> None:
    repos = client.catalog(page_size=10)
    assert repos == list(registry.seeded.repos)
    assert len(repos) == len(set(repos))


def test_tags__every_seeded_repo__equal_the_seeded_tags(client: RegistryClient, registry: SeededRegistry) -> None:
    seeded = registry.seeded
    for repo in seeded.repos:
        if repo == seeded.gone_repo:
            continue
        # 2.8.2 lists tags in storage order, not sorted: compare as sets, and without duplicates.
        tags = client.tags(repo)
        assert sorted(tags) == sorted(seeded.tags[repo]), repo


def test_tags__repo_whose_only_tag_was_deleted__matches_what_the_registry_answered(
        client: RegistryClient, registry: SeededRegistry) -> None:
    seeded = registry.seeded
    assert seeded.tags[seeded.gone_repo] == {}
    if seeded.gone_tags_status == 404:
        with pytest.raises(e.NameUnknown):
            client.tags(seeded.gone_repo)
    else:
        assert seeded.gone_tags_status == 200
        assert client.tags(seeded.gone_repo) == []


# -- manifests -------------------------------------------------------------------------------


def test_head_manifest__every_seeded_tag__gives_seeded_digest_media_type_and_size(
        client: RegistryClient, registry: SeededRegistry) -> None:
    for repo, tag, fact in _all_tags(registry):
        ref = client.head_manifest(repo, tag)
        assert (ref.digest, ref.media_type, ref.size) == (fact.digest, fact.media_type, fact.manifest_size), \
            (repo, tag)


def test_manifest__every_seeded_tag__gives_seeded_digest_media_type_and_content(
        client: RegistryClient, registry: SeededRegistry) -> None:
    media_types = set()
    for repo, tag, fact in _all_tags(registry):
        man = client.manifest(repo, tag)
        where = (repo, tag)
        assert man.digest == fact.digest, where
        assert man.media_type == fact.media_type, where
        assert man.size == len(man.raw) == fact.manifest_size, where
        assert "sha256:" + hashlib.sha256(man.raw).hexdigest() == fact.digest, where
        assert man.problem == "", where
        assert man.schema_version == 2, where
        assert dict(man.annotations) == dict(fact.annotations), where
        assert man.artifact_type == (fact.artifact_type or ""), where
        if fact.children:
            assert man.is_index and not man.is_image_manifest, where
            assert [d.digest for d in man.manifests] == [c.digest for c in fact.children], where
            assert [d.media_type for d in man.manifests] == [c.media_type for c in fact.children], where
            assert [d.size for d in man.manifests] == [c.manifest_size for c in fact.children], where
        else:
            assert man.is_image_manifest, where
            assert man.config is not None and man.config.digest == fact.config_digest, where
            assert man.config.media_type == fact.config_media_type, where
            assert man.config.size == fact.config_size, where
            assert tuple(d.digest for d in man.layers) == fact.layer_digests, where
            assert tuple(d.size for d in man.layers) == fact.layer_sizes, where
            assert tuple(d.media_type for d in man.layers) == fact.layer_media_types, where
            assert man.layers_size == fact.size, where
        media_types.add(man.media_type)
    # All four manifest flavours were really exercised.
    assert media_types == {m.DOCKER_MANIFEST, m.OCI_MANIFEST, m.OCI_INDEX, m.DOCKER_MANIFEST_LIST}


def test_manifest__by_digest__every_seeded_manifest_incl_children_and_untagged_referrer(
        client: RegistryClient, registry: SeededRegistry) -> None:
    seeded = registry.seeded
    found = _manifests_by_repo(registry)
    # Everything pushed is reachable from a tag, except the deleted one.
    assert set(found) == set(seeded.manifests) - {seeded.gone_digest}
    assert seeded.referrer_digest in found
    for digest, (repo, fact) in found.items():
        man = client.manifest(repo, digest)
        assert (man.digest, man.media_type, man.size) == (digest, fact.media_type, fact.manifest_size), repo
        ref = client.head_manifest(repo, digest)
        assert (ref.digest, ref.media_type, ref.size) == (digest, fact.media_type, fact.manifest_size), repo


def test_manifest_bytes__by_tag__raw_bytes_hash_to_the_returned_digest(
        client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_WEB, "1.10.0")
    raw, media_type, digest = client.manifest_bytes(REPO_WEB, "1.10.0")
    assert (media_type, digest) == (fact.media_type, fact.digest)
    assert p.sha256_digest(raw) == fact.digest


def test_manifest__two_tags_one_digest__same_manifest(client: RegistryClient, registry: SeededRegistry) -> None:
    a, b = client.manifest(REPO_ALPINE, "3.19"), client.manifest(REPO_ALPINE, "latest")
    assert a.digest == b.digest == registry.seeded.digest(REPO_ALPINE, "latest")
    assert a.raw == b.raw


def test_manifest__oci_index__platforms_and_attestation_child(
        client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_MULTI, "2.0")
    man = client.manifest(REPO_MULTI, "2.0")
    platforms = [str(d.platform) for d in man.manifests if not d.is_attestation]
    assert tuple(platforms) == fact.platforms == ("linux/amd64", "linux/arm64/v8")
    attestations = [d for d in man.manifests if d.is_attestation]
    assert len(attestations) == 1
    assert str(attestations[0].platform) == "unknown/unknown"
    assert attestations[0].annotations["vnd.docker.reference.digest"] == fact.children[0].digest


def test_manifest__docker_manifest_list__platforms(client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_MULTI, "legacy-list")
    man = client.manifest(REPO_MULTI, "legacy-list")
    assert man.media_type == m.DOCKER_MANIFEST_LIST and man.is_index
    assert tuple(str(d.platform) for d in man.manifests) == fact.platforms == ("linux/amd64", "linux/arm/v7")


def test_manifest__oci_referrer__subject_and_artifact_type(client: RegistryClient, registry: SeededRegistry) -> None:
    seeded = registry.seeded
    fact = seeded.manifests[seeded.referrer_digest]
    man = client.manifest(REPO_WEB, seeded.referrer_digest)
    assert man.subject is not None
    assert man.subject.digest == fact.subject == seeded.digest(REPO_WEB, "1.2.0")
    assert man.artifact_type == fact.artifact_type == "application/spdx+json"
    assert man.config is not None and man.config.media_type == m.OCI_EMPTY


# -- configs and blobs -----------------------------------------------------------------------


def test_config__every_seeded_image_config__created_labels_platform_and_history_equal_the_facts(
        client: RegistryClient, registry: SeededRegistry) -> None:
    checked = 0
    for digest, (repo, fact) in _manifests_by_repo(registry).items():
        if fact.config_media_type not in m.IMAGE_CONFIG_TYPES or repo == REPO_BAD_CONFIG:
            continue
        assert fact.config_digest
        cfg = client.config(repo, fact.config_digest)
        where = (repo, digest)
        assert cfg.problem == "", where
        assert cfg.digest == fact.config_digest, where
        assert p.sha256_digest(cfg.raw) == fact.config_digest, where
        assert cfg.created == (_utc(fact.created) if fact.created else None), where
        assert dict(cfg.labels) == dict(fact.labels), where
        if fact.platform:
            assert "/".join(x for x in (cfg.os, cfg.architecture, cfg.variant) if x) == fact.platform, where
        # History against the test bed's own read of the blob, field by field.
        doc = json.loads(p.get_blob(registry.url, repo, fact.config_digest))
        expected = [(_utc(h["created"]) if h.get("created") else None, h.get("created_by", ""),
                     h.get("comment", ""), h.get("author", ""), h.get("empty_layer", False))
                    for h in doc.get("history") or []]
        assert [(h.created, h.created_by, h.comment, h.author, h.empty_layer) for h in cfg.history] == expected, where
        assert cfg.diff_ids == tuple(doc["rootfs"]["diff_ids"]), where
        checked += 1
    assert checked >= 8


def test_config__web_image__hostile_strings_kept_verbatim_and_runtime_fields(
        client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_WEB, "1.10.0")
    cfg = client.config(REPO_WEB, fact.config_digest or "")
    assert cfg.created == _utc("2024-05-15T12:30:00Z")
    assert cfg.labels["com.acme.description"] == XSS_LABEL
    assert XSS_HISTORY in [h.created_by for h in cfg.history]
    assert cfg.author == "ACME Web Team <web@acme.example>"
    assert cfg.entrypoint == ("/app/web",) and cfg.cmd == ("--port", "8080")
    assert cfg.working_dir == "/app" and cfg.user == "1000:1000"
    assert cfg.exposed_ports == ("8080/tcp",) and cfg.volumes == ("/data",)
    assert "WEB_VERSION=1.10.0" in cfg.env
    assert [h.comment for h in cfg.history if h.comment] == ["buildkit.dockerfile.v0"]
    assert sum(1 for h in cfg.history if not h.empty_layer) == len(fact.layer_digests)


def test_config__skopeo_pushed_alpine__umoci_facts(client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_ALPINE, "3.19")
    cfg = client.config(REPO_ALPINE, fact.config_digest or "")
    assert cfg.created == _utc("2024-01-27T00:51:38Z") == _utc(fact.created or "")
    assert (cfg.os, cfg.architecture) == ("linux", "amd64")
    assert cfg.labels["org.opencontainers.image.version"] == "3.19.1"
    assert cfg.cmd == ("/bin/sh",)


def test_config__not_json__problem_instead_of_raising(client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_BAD_CONFIG, "latest")
    cfg = client.config(REPO_BAD_CONFIG, fact.config_digest or "")
    assert "not valid JSON" in cfg.problem
    assert cfg.raw == b"not json{"
    assert cfg.created is None and cfg.history == ()


def test_head_blob__every_config_and_layer__size_equals_the_fact(
        client: RegistryClient, registry: SeededRegistry) -> None:
    sizes: dict[tuple[str, str], int] = {}
    for repo, fact in _manifests_by_repo(registry).values():
        if fact.config_digest:
            sizes[(repo, fact.config_digest)] = fact.config_size
        for digest, size in zip(fact.layer_digests, fact.layer_sizes, strict=True):
            sizes[(repo, digest)] = size
    assert len(sizes) > 20
    for (repo, digest), size in sizes.items():
        info = client.head_blob(repo, digest)
        assert (info.digest, info.size) == (digest, size), repo


def test_blob_bytes__layer__bytes_hash_to_digest_and_have_the_fact_size(
        client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_WEB, "1.9.0")
    data = client.blob_bytes(REPO_WEB, fact.layer_digests[0])
    assert p.sha256_digest(data) == fact.layer_digests[0]
    assert len(data) == fact.layer_sizes[0]


def test_open_blob__every_layer_of_web__streams_bytes_whose_sha256_is_the_digest(
        client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_WEB, "1.10.0")
    for digest, size in zip(fact.layer_digests, fact.layer_sizes, strict=True):
        hasher, total, chunks = hashlib.sha256(), 0, 0
        with client.open_blob(REPO_WEB, digest) as stream:
            assert (stream.digest, stream.size) == (digest, size)
            assert stream.media_type  # the registry's, or application/octet-stream
            for chunk in stream:
                hasher.update(chunk)
                total += len(chunk)
                chunks += 1
        assert "sha256:" + hasher.hexdigest() == digest
        assert total == size and chunks >= 1


def test_open_blob__chart_content__streams_the_seeded_bytes(client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_CHART, "0.1.0")
    with client.open_blob(REPO_CHART, fact.layer_digests[0]) as stream:
        data = b"".join(stream)
    assert data == p.get_blob(registry.url, REPO_CHART, fact.layer_digests[0])


def test_open_blob__closed_before_reading__releases_without_error(
        client: RegistryClient, registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_WEB, "1.10.0")
    stream = client.open_blob(REPO_WEB, fact.layer_digests[0])
    stream.close()
    # The pooled session still works afterwards.
    assert client.head_blob(REPO_WEB, fact.layer_digests[0]).size == fact.layer_sizes[0]


# -- not found -------------------------------------------------------------------------------


def test_tags__unknown_repo__name_unknown(client: RegistryClient) -> None:
    with pytest.raises(e.NameUnknown) as info:
        client.tags("no/such/repo")
    assert info.value.http_status == 404
    assert info.value.url.endswith("/v2/no/such/repo/tags/list")


def test_manifest__unknown_tag__manifest_unknown(client: RegistryClient) -> None:
    with pytest.raises(e.ManifestUnknown):
        client.manifest(REPO_WEB, "no-such-tag")
    with pytest.raises(e.ManifestUnknown):
        client.head_manifest(REPO_WEB, "no-such-tag")


def test_manifest__unknown_digest__manifest_unknown(client: RegistryClient) -> None:
    with pytest.raises(e.ManifestUnknown):
        client.manifest(REPO_WEB, MISSING_DIGEST)
    with pytest.raises(e.ManifestUnknown):
        client.head_manifest(REPO_WEB, MISSING_DIGEST)


def test_manifest__deleted_digest__manifest_unknown(client: RegistryClient, registry: SeededRegistry) -> None:
    seeded = registry.seeded
    with pytest.raises(e.ManifestUnknown):
        client.manifest(seeded.gone_repo, seeded.gone_digest)
    with pytest.raises(e.ManifestUnknown):
        client.head_manifest(seeded.gone_repo, seeded.gone_digest)


def test_manifest__unknown_repo__manifest_unknown(client: RegistryClient) -> None:
    # 2.8.2 answers MANIFEST_UNKNOWN (not NAME_UNKNOWN) for a manifest of a repository it never saw.
    with pytest.raises(e.ManifestUnknown, match="manifest unknown"):
        client.manifest("no/such/repo", "latest")
    with pytest.raises(e.ManifestUnknown):
        client.head_manifest("no/such/repo", "latest")


def test_blob__unknown_digest__blob_unknown_from_every_blob_call(client: RegistryClient) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.head_blob(REPO_WEB, MISSING_DIGEST),
        lambda: client.blob_bytes(REPO_WEB, MISSING_DIGEST),
        lambda: client.config(REPO_WEB, MISSING_DIGEST),
        lambda: client.open_blob(REPO_WEB, MISSING_DIGEST),
    ]
    for call in calls:
        with pytest.raises(e.BlobUnknown):
            call()


def test_blob__digest_of_another_repo__blob_unknown(client: RegistryClient, registry: SeededRegistry) -> None:
    # Blobs are linked per repository: the chart's layer is not reachable through acme/web.
    layer = registry.seeded.fact(REPO_CHART, "0.1.0").layer_digests[0]
    with pytest.raises(e.BlobUnknown):
        client.head_blob(REPO_WEB, layer)


# -- classification --------------------------------------------------------------------------

# What the seed meant -> what the dashboard's classifier must call it.
EXPECTED_KIND = {
    Kind.IMAGE: kinds.IMAGE,
    Kind.INDEX: kinds.INDEX,
    Kind.MANIFEST_LIST: kinds.INDEX,
    Kind.REFERRERS_INDEX: kinds.INDEX,
    Kind.ATTESTATION_MANIFEST: kinds.ATTESTATION,
    Kind.HELM_CHART: kinds.HELM,
    Kind.SIGNATURE: kinds.SIGNATURE,
    Kind.SBOM: kinds.SBOM,
    Kind.ATTESTATION: kinds.ATTESTATION,
}


def test_kind__every_seeded_manifest__agrees_with_the_seeded_kind(
        client: RegistryClient, registry: SeededRegistry) -> None:
    seeded = registry.seeded
    seen = set()
    for digest, (repo, fact) in _manifests_by_repo(registry).items():
        kind = client.manifest(repo, digest).kind
        if fact.kind == Kind.ARTIFACT:
            continue  # checked one by one below
        assert kind == EXPECTED_KIND[fact.kind], (repo, digest, fact.kind)
        seen.add(fact.kind)
    assert seen == set(EXPECTED_KIND)
    assert {f.kind for f in seeded.manifests.values()} == set(EXPECTED_KIND) | {Kind.ARTIFACT}


@pytest.mark.parametrize(("repo", "tag", "expected"), [
    (REPO_ALPINE, "3.19", {kinds.IMAGE}),
    (REPO_WEB, "1.10.0", {kinds.IMAGE}),
    (REPO_MULTI, "2.0", {kinds.INDEX}),
    (REPO_MULTI, "legacy-list", {kinds.INDEX}),
    (REPO_CHART, "0.1.0", {kinds.HELM}),
    # A non-JSON config is still an image by its media types.
    (REPO_BAD_CONFIG, "latest", {kinds.IMAGE}),
    (REPO_BAD_MEDIATYPE, "v1", {kinds.ARTIFACT, kinds.UNKNOWN}),
])
def test_kind__seeded_tag__classified(client: RegistryClient, repo: str, tag: str, expected: set[str]) -> None:
    assert client.manifest(repo, tag).kind in expected


def test_kind__cosign_attachments__signature_sbom_attestation(
        client: RegistryClient, registry: SeededRegistry) -> None:
    by_kind = {a.kind: a for a in registry.seeded.attachments}
    assert client.manifest(REPO_WEB, by_kind[Kind.SIGNATURE].tag).kind == kinds.SIGNATURE
    assert client.manifest(REPO_WEB, by_kind[Kind.SBOM].tag).kind == kinds.SBOM
    assert client.manifest(REPO_WEB, by_kind[Kind.ATTESTATION].tag).kind == kinds.ATTESTATION
    assert client.manifest(REPO_WEB, by_kind[Kind.REFERRERS_INDEX].tag).kind == kinds.INDEX


def test_kind__oci_referrer_with_spdx_artifact_type__sbom(client: RegistryClient, registry: SeededRegistry) -> None:
    # Seeded as a generic artifact, but its artifactType says what it is.
    assert client.manifest(REPO_WEB, registry.seeded.referrer_digest).kind == kinds.SBOM


# -- content pushed for one test -------------------------------------------------------------


def test_manifest__pushed_by_digest_only__reachable_by_digest_not_listed_as_tag(
        empty_registry: RegistryServer) -> None:
    img = p.build_image([{"only.txt": b"by digest\n"}], labels={"k": "v"})
    p.push_image(empty_registry.url, "solo/untagged", img)
    p.push_image(empty_registry.url, "solo/untagged", p.build_image([{"t.txt": b"tagged\n"}]), "t")
    c = RegistryClient(RegistryConfig(url=empty_registry.url))
    try:
        assert c.catalog() == ["solo/untagged"]
        assert c.tags("solo/untagged") == ["t"]
        man = c.manifest("solo/untagged", img.digest)
        assert (man.digest, man.kind) == (img.digest, kinds.IMAGE)
        assert dict(c.config("solo/untagged", img.config_digest or "").labels) == {"k": "v"}
    finally:
        c.close()


def test_manifest__hostile_but_valid_oci_manifest_in_real_registry__parsed_with_sane_values(
        empty_registry: RegistryServer) -> None:
    layer = p.blob(p.MT_OCI_LAYER, b"layer bytes")
    config = p.blob(p.MT_OCI_CONFIG, {"created": "0001-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
                                      "config": {"Labels": {"n": 1, "s": "x"}},
                                      "history": [{"created": "2024-01-02T03:04:05.123456789Z",
                                                   "created_by": "step"}, "not a dict"],
                                      "rootfs": {"type": "layers", "diff_ids": []}})
    doc = {"schemaVersion": 2, "mediaType": p.MT_OCI_MANIFEST,
           "config": config.descriptor(),
           "layers": [layer.descriptor()],
           "annotations": {"org.example.html": "<b>x</b>", "org.example.quote": "\"'"}}
    body = p.canonical_json(doc)
    p.upload_blob(empty_registry.url, "odd/one", layer.data)
    p.upload_blob(empty_registry.url, "odd/one", config.data)
    digest = p.put_manifest(empty_registry.url, "odd/one", "v1", body, p.MT_OCI_MANIFEST)
    c = RegistryClient(RegistryConfig(url=empty_registry.url))
    try:
        man = c.manifest("odd/one", "v1")
        assert man.digest == digest and man.problem == ""
        assert man.annotations["org.example.html"] == "<b>x</b>"
        cfg = c.config("odd/one", config.digest)
        assert cfg.created is None  # Go's zero time means "unknown"
        assert dict(cfg.labels) == {"n": "1", "s": "x"}
        assert len(cfg.history) == 1
        assert cfg.history[0].created is not None and cfg.history[0].created.microsecond == 123456
    finally:
        c.close()


def test_tags__deleted_last_tag_in_fresh_registry__same_answer_as_seeded_gone_repo(
        empty_registry: RegistryServer, registry: SeededRegistry) -> None:
    img = p.build_image([{"gone.txt": b"bye\n"}])
    digest = p.push_image(empty_registry.url, "tmp/gone", img, "only")
    p.delete_manifest(empty_registry.url, "tmp/gone", digest)
    c = RegistryClient(RegistryConfig(url=empty_registry.url))
    try:
        assert c.catalog() == ["tmp/gone"]
        if registry.seeded.gone_tags_status == 404:
            with pytest.raises(e.NameUnknown):
                c.tags("tmp/gone")
        else:
            assert c.tags("tmp/gone") == []
        with pytest.raises(e.ManifestUnknown):
            c.manifest("tmp/gone", digest)
    finally:
        c.close()


def test_catalog__empty_registry__empty_list(empty_registry: RegistryServer) -> None:
    c = RegistryClient(RegistryConfig(url=empty_registry.url))
    try:
        assert c.catalog() == []
        assert c.ping().api_version == "registry/2.0"
    finally:
        c.close()


# -- what goes on the wire (a local recording server) ----------------------------------------


class _Recorder(QuietHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        body = b"{}"
        self.send_response(200)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer


@pytest.fixture
def recorder() -> Iterator[tuple[RegistryClient, list[tuple[str, str, dict[str, str]]]]]:
    seen: list[tuple[str, str, dict[str, str]]] = []
    with serving(_Recorder, seen=seen) as url:
        c = RegistryClient(RegistryConfig(url=url, read_timeout=5))
        try:
            yield c, seen
        finally:
            c.close()


def test_user_agent__every_request__starts_with_registryui(recorder) -> None:
    client, seen = recorder
    client.ping()
    client.head_manifest("acme/web", "sha256:" + "a" * 64)
    assert [(method, path) for method, path, _ in seen] == [
        ("GET", "/v2/"), ("HEAD", "/v2/acme/web/manifests/sha256:" + "a" * 64)]
    for _, _, headers in seen:
        assert headers["User-Agent"].startswith("registryui")


def test_user_agent__configured_version__sent_verbatim() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []
    with serving(_Recorder, seen=seen) as url:
        c = RegistryClient(RegistryConfig(url=url, user_agent="registryui/9.9.9"))
        c.ping()
        c.close()
    assert seen[0][2]["User-Agent"] == "registryui/9.9.9"


def test_manifest_request__accept_offers_all_four_manifest_types(recorder) -> None:
    client, seen = recorder
    # {} is not a manifest, but the request is what this test is about.
    client.manifest("acme/web", "latest")
    accept = {t.strip() for t in seen[0][2]["Accept"].split(",")}
    assert accept == {m.DOCKER_MANIFEST, m.DOCKER_MANIFEST_LIST, m.OCI_MANIFEST, m.OCI_INDEX}


BAD_NAMES = ["UPPER/case", "a//b", "../etc", "a" * 300, "", "/leading", "trailing/", "a/../b", "a b",
             "a/b?x=1", "a/b#frag", "-dash/start", "a/b/", "acme/web%2f..", "é/x"]
BAD_TAGS = ["", "-lead", ".lead", "a" * 129, "has space", "a/b", "a:b", "../x", "tag?x", "ünï"]
BAD_DIGESTS = ["", "latest", "sha256:abc", "sha256:" + "A" * 64, "sha256:" + "g" * 64, "md5:" + "a" * 32,
               "sha256:" + "a" * 65, "sha512:" + "a" * 64, "sha256-" + "a" * 64, " sha256:" + "a" * 64,
               "sha256:" + "a" * 64 + "/../x"]


def test_invalid_reference__bad_names__raised_before_any_request(recorder) -> None:
    client, seen = recorder
    calls: list[Callable[[str], object]] = [
        client.tags,
        lambda n: client.head_manifest(n, "latest"),
        lambda n: client.manifest(n, "latest"),
        lambda n: client.manifest_bytes(n, "latest"),
        lambda n: client.blob_bytes(n, MISSING_DIGEST),
        lambda n: client.config(n, MISSING_DIGEST),
        lambda n: client.head_blob(n, MISSING_DIGEST),
        lambda n: client.open_blob(n, MISSING_DIGEST),
    ]
    for name in BAD_NAMES:
        for call in calls:
            with pytest.raises(e.InvalidReference) as info:
                call(name)
            assert info.value.http_status == 404
            assert "not a valid repository name" in str(info.value)
    assert seen == []


def test_invalid_reference__300_char_name__message_bounded(recorder) -> None:
    client, seen = recorder
    with pytest.raises(e.InvalidReference) as info:
        client.tags("a" * 300)
    # 255 is the grammar's limit; the name itself is only quoted, not echoed unbounded.
    assert len(str(info.value)) < 400
    assert seen == []


def test_invalid_reference__bad_tags__raised_before_any_request(recorder) -> None:
    client, seen = recorder
    for tag in BAD_TAGS:
        for call in (client.head_manifest, client.manifest, client.manifest_bytes):
            with pytest.raises(e.InvalidReference, match="neither a valid tag nor"):
                call("acme/web", tag)
    assert seen == []


def test_invalid_reference__bad_digests__raised_before_any_request(recorder) -> None:
    client, seen = recorder
    for digest in BAD_DIGESTS:
        for call in (client.head_blob, client.blob_bytes, client.config, client.open_blob):
            with pytest.raises(e.InvalidReference, match="not a valid sha256/sha512 digest"):
                call("acme/web", digest)
    # As a manifest reference a malformed digest (with its ':') is neither a tag nor a digest.
    for digest in BAD_DIGESTS:
        if ":" in digest:
            with pytest.raises(e.InvalidReference):
                client.manifest("acme/web", digest)
    assert seen == []


def test_valid_reference__edge_of_the_grammar__reaches_the_server(recorder) -> None:
    client, seen = recorder
    client.head_blob("a" * 255, MISSING_DIGEST)
    client.head_blob("a.b/c__d/e-f--g/h_i", "sha512:" + "f" * 128)
    client.head_manifest("x/y", "_" + "a" * 127)
    client.head_manifest("x/y", "1.0-RC_2")
    # The recorder sends no Docker-Content-Digest, so a HEAD by tag falls back to a GET.
    assert [(method, path) for method, path, _ in seen] == [
        ("HEAD", f"/v2/{'a' * 255}/blobs/{MISSING_DIGEST}"),
        ("HEAD", "/v2/a.b/c__d/e-f--g/h_i/blobs/sha512:" + "f" * 128),
        ("HEAD", "/v2/x/y/manifests/_" + "a" * 127),
        ("GET", "/v2/x/y/manifests/_" + "a" * 127),
        ("HEAD", "/v2/x/y/manifests/1.0-RC_2"),
        ("GET", "/v2/x/y/manifests/1.0-RC_2"),
    ]
