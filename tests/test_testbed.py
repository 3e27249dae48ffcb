"""The test bed itself: the seeded registry really holds what ``Seeded`` says it holds."""

from __future__ import annotations

import gzip
import json
import socket
from urllib.parse import urljoin

import pytest
import requests

from testbed import Kind, RegistryServer, RegistryStartError, SeededRegistry, seed_many_tags
from testbed import push as p
from testbed.seed import REPO_ALPINE, REPO_MULTI, REPO_WEB, XSS_HISTORY, XSS_LABEL

T = p.TIMEOUT


def _head_digest(url: str, repo: str, ref: str) -> tuple[str, str]:
    r = requests.head(f"{url}/v2/{repo}/manifests/{ref}", headers={"Accept": p.MANIFEST_ACCEPT}, timeout=T)
    assert r.status_code == 200, (repo, ref, r.status_code)
    return r.headers["Docker-Content-Digest"], r.headers["Content-Type"]


def _get_json(url: str) -> dict:
    r = requests.get(url, timeout=T)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def test_seed__catalog_pages_of_100_follow_link_to_every_repo(registry: SeededRegistry) -> None:
    repos: list[str] = []
    pages = 0
    next_url: str | None = f"{registry.url}/v2/_catalog?n=100"
    while next_url:
        r = requests.get(next_url, timeout=T)
        assert r.status_code == 200
        repos += r.json()["repositories"]
        pages += 1
        nxt = r.links.get("next")
        next_url = urljoin(registry.url, nxt["url"]) if nxt else None
        assert pages < 10, "catalog pagination does not terminate"
    assert pages >= 2
    assert len(registry.seeded.repos) > 120
    assert repos == list(registry.seeded.repos)


def test_seed__every_tag_head_digest_equals_recorded_digest(registry: SeededRegistry) -> None:
    seeded = registry.seeded
    for repo, tags in seeded.tags.items():
        for tag, digest in tags.items():
            got, content_type = _head_digest(registry.url, repo, tag)
            assert got == digest, (repo, tag)
            assert content_type == seeded.manifests[digest].media_type, (repo, tag)


def test_seed__tags_list_matches_recorded_tags(registry: SeededRegistry) -> None:
    seeded = registry.seeded
    for repo in seeded.repos:
        if repo == seeded.gone_repo:
            continue
        body = _get_json(f"{registry.url}/v2/{repo}/tags/list")
        # 2.8.2 returns tags in storage order, not sorted: compare as sets.
        assert set(body["tags"]) == set(seeded.tags[repo]), repo


def test_seed__shared_tags_point_at_one_digest(registry: SeededRegistry) -> None:
    s = registry.seeded
    assert s.digest(REPO_ALPINE, "3.19") == s.digest(REPO_ALPINE, "latest")
    assert _head_digest(registry.url, REPO_ALPINE, "3.19")[0] == _head_digest(registry.url, REPO_ALPINE, "latest")[0]
    assert s.digest(REPO_WEB, "1.10.0") == s.digest(REPO_WEB, "latest")
    assert s.digest(REPO_WEB, "1.9.0") != s.digest(REPO_WEB, "1.10.0")


def test_seed__skopeo_pushed_alpine_is_docker_v2_with_umoci_config(registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_ALPINE, "3.19")
    assert fact.media_type == p.MT_DOCKER_MANIFEST
    assert fact.config_media_type == p.MT_DOCKER_CONFIG
    assert fact.layer_media_types == (p.MT_DOCKER_LAYER,)
    assert fact.created == "2024-01-27T00:51:38Z"
    assert fact.platform == "linux/amd64"
    assert fact.labels["org.opencontainers.image.version"] == "3.19.1"


def test_seed__docker_manifest_list_has_docker_list_media_type(registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_MULTI, "legacy-list")
    digest, content_type = _head_digest(registry.url, REPO_MULTI, "legacy-list")
    assert (digest, content_type) == (fact.digest, p.MT_DOCKER_LIST)
    assert fact.kind == Kind.MANIFEST_LIST
    assert fact.platforms == ("linux/amd64", "linux/arm/v7")
    assert all(c.media_type == p.MT_DOCKER_MANIFEST for c in fact.children)


def test_seed__oci_index_lists_platforms_and_attestation_child(registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_MULTI, "2.0")
    body, content_type = p.get_manifest(registry.url, REPO_MULTI, "2.0")
    assert content_type == p.MT_OCI_INDEX
    entries = json.loads(body)["manifests"]
    assert [e["digest"] for e in entries] == [c.digest for c in fact.children]
    assert fact.platforms == ("linux/amd64", "linux/arm64/v8")
    att = entries[2]
    assert att["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert att["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
    assert att["annotations"]["vnd.docker.reference.digest"] == entries[0]["digest"]
    amd64, arm64 = fact.children[:2]
    assert amd64.size != arm64.size and amd64.config_digest != arm64.config_digest
    assert fact.size == amd64.size + arm64.size


def test_seed__web_image_config_lines_up_history_diff_ids_and_hostile_strings(registry: SeededRegistry) -> None:
    fact = registry.seeded.fact(REPO_WEB, "1.10.0")
    cfg = json.loads(p.get_blob(registry.url, REPO_WEB, fact.config_digest or ""))
    assert cfg["created"] == fact.created == "2024-05-15T12:30:00Z"
    assert cfg["config"]["Labels"]["com.acme.description"] == XSS_LABEL
    assert XSS_HISTORY in [h["created_by"] for h in cfg["history"]]
    assert sum(1 for h in cfg["history"] if not h.get("empty_layer")) == len(fact.layer_digests)
    # diff_ids are of the uncompressed tar, i.e. not the layer digests themselves.
    layer = p.get_blob(registry.url, REPO_WEB, fact.layer_digests[0])
    assert len(layer) == fact.layer_sizes[0]
    assert cfg["rootfs"]["diff_ids"][0] == p.sha256_digest(gzip.decompress(layer))
    assert fact.size == sum(fact.layer_sizes)
    created = {t: registry.seeded.fact(REPO_WEB, t).created for t in ("1.2.0", "1.9.0", "1.10.0")}
    assert len(set(created.values())) == 3


def test_seed__cosign_and_referrer_attachments_name_their_subject(registry: SeededRegistry) -> None:
    s = registry.seeded
    kinds = {a.kind: a for a in s.attachments}
    assert set(kinds) == {Kind.SIGNATURE, Kind.SBOM, Kind.ATTESTATION, Kind.REFERRERS_INDEX}
    for a in s.attachments:
        assert a.subject_digest == s.digest(a.repo, a.subject_tag)
        assert a.tag.startswith("sha256-" + a.subject_digest.removeprefix("sha256:"))
        assert s.tags[a.repo][a.tag] == a.digest
    index = json.loads(p.get_manifest(registry.url, REPO_WEB, kinds[Kind.REFERRERS_INDEX].tag)[0])
    assert [m["digest"] for m in index["manifests"]] == [s.referrer_digest]
    referrer = json.loads(p.get_manifest(registry.url, REPO_WEB, s.referrer_digest)[0])
    assert referrer["subject"]["digest"] == s.digest(REPO_WEB, "1.2.0")
    assert referrer["artifactType"] == "application/spdx+json"


def test_seed__deleted_repo_stays_in_catalog_with_recorded_tags_answer(registry: SeededRegistry) -> None:
    s = registry.seeded
    assert s.gone_repo in s.repos and s.tags[s.gone_repo] == {}
    r = requests.get(f"{registry.url}/v2/{s.gone_repo}/tags/list", timeout=T)
    assert r.status_code == s.gone_tags_status
    assert r.json() == s.gone_tags_body
    gone = requests.head(f"{registry.url}/v2/{s.gone_repo}/manifests/{s.gone_digest}",
                         headers={"Accept": p.MANIFEST_ACCEPT}, timeout=T)
    assert gone.status_code == 404


def test_seed__broken_config_blob_is_served_verbatim(registry: SeededRegistry) -> None:
    fact = registry.seeded.fact("bad/config", "latest")
    assert p.get_blob(registry.url, "bad/config", fact.config_digest or "") == b"not json{"
    assert registry.seeded.fact("bad/mediatype", "v1").config_media_type == "application/x-unknown"


def test_seed_many_tags__each_tag_is_a_distinct_manifest(empty_registry: RegistryServer) -> None:
    tags = seed_many_tags(empty_registry.url, "bench/many", 25)
    assert len(tags) == len(set(tags.values())) == 25
    body = _get_json(f"{empty_registry.url}/v2/bench/many/tags/list")
    assert set(body["tags"]) == set(tags)
    assert _head_digest(empty_registry.url, "bench/many", "v1.7.0")[0] == tags["v1.7.0"]


def test_push__builders_are_deterministic() -> None:
    a = p.build_image([{"a/b.txt": b"x"}], labels={"k": "v"})
    b = p.build_image([{"a/b.txt": b"x"}], labels={"k": "v"})
    assert a.manifest == b.manifest and a.digest == b.digest
    assert p.build_index([a], oci=False).digest == p.build_index([b], oci=False).digest


def test_push__history_that_does_not_line_up_with_layers_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty steps"):
        p.build_image([{"a": b"1"}, {"b": b"2"}], history=[p.HistoryStep("one")])


def test_registry_server__start_failure_reports_log_tail(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = RegistryServer(tmp_path, port=busy.getsockname()[1])
        with pytest.raises(RegistryStartError, match="address already in use"):
            server.start()
    assert server.process is None
