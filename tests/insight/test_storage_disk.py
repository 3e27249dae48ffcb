"""The storage page's figures against the bytes a real registry keeps on disk.

Images that share layers (and whole manifests) are pushed into several repositories of a fresh
registry and indexed the way a sync and push events do; the page's total must equal the sum of
the registry's blob `data` files, and what it says garbage collection frees must be what the real
`garbage-collect` (plain, then with --delete-untagged) removes from disk. Expected per-repository
and per-tag figures are worked out by hand from the images' own bytes.
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from dashboard import remote
from dashboard.index import store, sync
from testbed import RegistryServer, registry_binary
from testbed import push as p
from tests.helpers.html import elements

pytestmark = pytest.mark.postgres

GC_TIMEOUT_S = 120


# -- helpers -------------------------------------------------------------------------------------


def layer(name: str, size: int) -> dict[str, bytes]:
    # Incompressible, so each layer's size is about what it says and no two are equal.
    return {name: hashlib.shake_256(name.encode()).digest(size)}


def files(image: p.Image) -> dict[str, int]:
    """Every blob file an image puts on disk (digest -> bytes): its manifest, config and layers,
    and an index's children with theirs."""
    out = {image.digest: image.manifest_size}
    if image.config is not None:
        out[image.config.digest] = image.config.size
    out.update({b.digest: b.size for b in image.layers})
    for child in image.children:
        out.update(files(child))
    return out


def blob_files(server: RegistryServer) -> dict[str, int]:
    """The registry's blob `data` files, measured without the code under test."""
    root = server.storage_dir / "docker/registry/v2/blobs"
    return {"sha256:" + f.parent.name: f.stat().st_size for f in root.glob("sha256/*/*/data")}


def index(repo: str, *, by_digest: tuple[str, ...] = ()) -> None:
    """A sync of `repo`, plus what the push events of manifests pushed by digest only (which no
    tag list shows) put in the index."""
    result = sync.sync_repository(repo)
    assert not result.problem, result.problem
    if by_digest:
        store.fetch_and_index(repo, list(by_digest))


def page(client, url: str) -> list[tuple[str, dict[str, str]]]:
    response = client.get(url)
    assert response.status_code == 200, response.content[:2000]
    return elements(response.content)


def figure(found: list[tuple[str, dict[str, str]]], element_id: str) -> int:
    return next(int(a["data-bytes"]) for _, a in found if a.get("id") == element_id)


def repositories(found: list[tuple[str, dict[str, str]]]) -> dict[str, dict[str, int]]:
    return {a["data-repository"]: {k: int(a[f"data-{k}"]) for k in ("total", "unique", "shared", "reclaimable")}
            for tag, a in found if tag == "tr" and "data-repository" in a}


def tags(found: list[tuple[str, dict[str, str]]]) -> dict[str, dict[str, int]]:
    return {a["data-tag"]: {k: int(a[f"data-{k}"]) for k in ("total", "unique", "shared")}
            for tag, a in found if tag == "tr" and "data-tag" in a}


def garbage_collect(server: RegistryServer, *, delete_untagged: bool) -> None:
    server.stop()  # the collector must not race the registry
    argv = [registry_binary(), "garbage-collect", *(["--delete-untagged"] if delete_untagged else []),
            str(server.config_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=GC_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def reg(empty_registry: RegistryServer, point_at, db) -> RegistryServer:
    point_at(empty_registry.url, ANONYMOUS_READ=True, STORAGE_PATH=str(empty_registry.storage_dir))
    return empty_registry


# -- shared layers -------------------------------------------------------------------------------


def test_storage__layers_and_manifests_shared_across_repositories__total_is_the_blob_files_on_disk(
        reg: RegistryServer, client) -> None:
    base = layer("base.bin", 3000)
    a = p.build_image([base, layer("a.bin", 5000)], labels={"i": "a"})
    b = p.build_image([base, layer("b.bin", 7000)], labels={"i": "b"})
    c = p.build_image([base, layer("b.bin", 7000), layer("c.bin", 11000)], labels={"i": "c"})
    amd64 = p.build_image([base, layer("amd64.bin", 2000)], platform="linux/amd64", labels={"i": "amd64"})
    arm64 = p.build_image([layer("arm64.bin", 2500)], platform="linux/arm64", labels={"i": "arm64"})
    multi = p.build_index([amd64, arm64])
    p.push_image(reg.url, "team/web", a, "1.0")
    p.push_image(reg.url, "team/web", a, "latest")
    p.push_image(reg.url, "team/web", b, "2.0")
    p.push_image(reg.url, "team/api", c, "1.0")
    p.push_image(reg.url, "team/copy", a, "1.0")  # the very same manifest in a second repository
    p.push_image(reg.url, "team/multi", multi, "latest")
    for repo in ("team/web", "team/api", "team/copy", "team/multi"):
        index(repo)

    found = page(client, "/-/storage/")

    on_disk = blob_files(reg)
    held = {"team/web": files(a) | files(b), "team/api": files(c), "team/copy": files(a), "team/multi": files(multi)}
    assert set(on_disk) == set().union(*held.values())  # the test's own bookkeeping, checked against the disk
    assert figure(found, "disk-total") == sum(on_disk.values())
    base_size = a.layers[0].size
    # By hand: web's a is all in copy too, and b's layer is in api; only b's manifest and config are web's alone.
    expected = {
        "team/web": {"total": sum(held["team/web"].values()), "unique": b.manifest_size + b.config_size},
        "team/api": {"total": sum(held["team/api"].values()),
                     "unique": c.manifest_size + c.config_size + c.layers[2].size},
        "team/copy": {"total": sum(held["team/copy"].values()), "unique": 0},
        "team/multi": {"total": sum(held["team/multi"].values()),
                       "unique": sum(held["team/multi"].values()) - base_size},
    }
    figures = repositories(found)
    assert {r: {"total": f["total"], "unique": f["unique"]} for r, f in figures.items()} == expected
    assert all(f["shared"] == f["total"] - f["unique"] and f["reclaimable"] == 0 for f in figures.values())
    # The largest repository comes first (the default order) and heads the chart.
    assert next(iter(figures)) == max(expected, key=lambda r: expected[r]["total"])
    bars = [a for tag, a in found if tag == "a" and "bar-row" in a.get("class", "")]
    assert [bar["data-repository"] for bar in bars] == sorted(expected, key=lambda r: -expected[r]["total"])
    assert {bar["data-repository"]: int(bar["data-unique"]) for bar in bars} == \
        {r: f["unique"] for r, f in expected.items()}

    # Per tag: 1.0 and latest are one image that team/copy has too; 2.0 shares its layer with team/api.
    web = tags(page(client, "/-/storage/?repository=team/web"))
    assert web == {
        "1.0": {"total": sum(files(a).values()), "unique": 0, "shared": sum(files(a).values())},
        "latest": {"total": sum(files(a).values()), "unique": 0, "shared": sum(files(a).values())},
        "2.0": {"total": sum(files(b).values()), "unique": b.manifest_size + b.config_size,
                "shared": base_size + b.layers[1].size},
    }
    assert list(web) == ["2.0", "1.0", "latest"]  # most unique bytes first
    # A multi-arch tag reaches its platforms: all of it is its own but the base layer.
    assert tags(page(client, "/-/storage/?repository=team/multi")) == {
        "latest": {"total": sum(files(multi).values()), "unique": sum(files(multi).values()) - base_size,
                   "shared": base_size}}

    # The page checks itself against the registry's storage when it can read it.
    measured = client.get("/-/storage/?measure=1", headers={"HX-Request": "true"})
    assert b"Checked: the registry&#x27;s storage holds" in measured.content or \
        b"Checked: the registry's storage holds" in measured.content


# -- what garbage collection frees ----------------------------------------------------------------


def test_reclaimable__after_a_delete__gc_frees_exactly_that_then_delete_untagged_frees_the_untagged(
        reg: RegistryServer, client) -> None:
    base = layer("base.bin", 3000)
    keep = p.build_image([base, layer("keep.bin", 5000)], labels={"i": "keep"})
    gone = p.build_image([base, layer("gone.bin", 7000), layer("shared.bin", 4000)], labels={"i": "gone"})
    other = p.build_image([layer("shared.bin", 4000), layer("other.bin", 6000)], labels={"i": "other"})
    loose = p.build_image([base, layer("loose.bin", 9000)], labels={"i": "loose"})
    p.push_image(reg.url, "team/app", keep, "1.0")
    p.push_image(reg.url, "team/app", gone, "old")
    p.push_image(reg.url, "team/app", loose)  # by digest only: untagged
    p.push_image(reg.url, "team/other", other, "latest")
    p.push_image(reg.url, "team/other", keep)  # untagged here, but team/app's tag keeps it
    index("team/app", by_digest=(loose.digest,))
    index("team/other", by_digest=(keep.digest,))
    remote.client().delete_manifest("team/app", gone.digest)
    store.remove_manifest("team/app", gone.digest, source="dashboard", actor="mia")

    found = page(client, "/-/storage/")

    # By hand: gone's base layer is keep's, its shared layer is other's.
    deleted = gone.manifest_size + gone.config_size + gone.layers[1].size
    untagged = loose.manifest_size + loose.config_size + loose.layers[1].size
    before = blob_files(reg)
    assert figure(found, "disk-total") == sum(before.values())
    assert figure(found, "gc-frees") == deleted
    assert figure(found, "gc-untagged-frees") == deleted + untagged
    assert {r: f["reclaimable"] for r, f in repositories(found).items()} == {
        "team/app": deleted + untagged, "team/other": 0}
    app = elements(client.get("/-/storage/?repository=team/app").content)
    held = {a["data-digest"]: int(a["data-reclaimable"]) for tag, a in app if tag == "tr" and "data-digest" in a}
    assert held == {gone.digest: deleted, loose.digest: untagged}

    garbage_collect(reg, delete_untagged=False)

    after_plain = blob_files(reg)
    assert sum(before.values()) - sum(after_plain.values()) == deleted
    store.after_garbage_collection(delete_untagged=False)
    found = page(client, "/-/storage/")
    assert figure(found, "disk-total") == sum(after_plain.values())
    assert (figure(found, "gc-frees"), figure(found, "gc-untagged-frees")) == (0, untagged)

    garbage_collect(reg, delete_untagged=True)

    after_untagged = blob_files(reg)
    assert sum(after_plain.values()) - sum(after_untagged.values()) == untagged
    store.after_garbage_collection(delete_untagged=True)
    found = page(client, "/-/storage/")
    assert figure(found, "disk-total") == sum(after_untagged.values())
    assert figure(found, "gc-untagged-frees") == 0
    assert set(after_untagged) == set(files(keep)) | set(files(other))
