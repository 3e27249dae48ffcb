"""Reading `garbage-collect` output: verbatim from registry 2.8.2 (Debian's docker-registry), on
three repositories: acme/a (tagged), acme/b (its only image deleted by digest) and acme/multi (a
tagged OCI index over two untagged platform images). No Django, no registry needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashboard import disk
from dashboard.gc.parse import ManifestRef, Parser, Summary, parse

INDEX = "sha256:9630f151bda50ee0b674c9589e9a1122e790c0dc8cf8848c1e2c227756a2e1eb"
ARM64 = "sha256:f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc"
AMD64 = "sha256:fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499"
B_BLOBS = ("sha256:2b58d1cd3ebfa5652e47b400467fb722d8c6ce7a054e06a68a0aaa63c685823b",
           "sha256:45258f3e3f93765819315c5fccc21d9565e90a7785b2617c2dc814b5a1e9b369",
           "sha256:88cd8bbf4b614b0e2c6aaf71dd1a1469bbd432f7a644500c7efe7df3fe54eaa9")
CHILD_BLOBS = ("sha256:f1ea50f0ab2e1d2faa47b5fc2d9191879421dd208aa79303c24bdb3f0b5bcd69",
               "sha256:f53498fe6099a4448e1462ee8aef5053ce9a52c2d442d4fd1fa8938544e43027",
               "sha256:19724265370326a4db0d6876ff4d3d93d5f703c3ac7f48468e77d020da95bc3c",
               "sha256:b34ef51f1116405abeaeeb55378f917e4e481014577cce102a998c9078d86db8")

# `docker-registry garbage-collect --dry-run config.yml` (a real run prints the same on stdout).
DRY_RUN = """\
acme/a
acme/a: marking manifest sha256:6b4aadaec59dbb60c76acc8138f5890c9c7334928bf4e2c46792c406073abe38 
acme/a: marking blob sha256:5f342a23d31fe523c65bea139e303d68d362f6571c67014158e706228fbdbfd5
acme/a: marking blob sha256:cf65f020cf016fb227349d92af5cae88d95190277690c97e859c4791f2a5fd74
acme/b
acme/multi
acme/multi: marking manifest sha256:9630f151bda50ee0b674c9589e9a1122e790c0dc8cf8848c1e2c227756a2e1eb 
acme/multi: marking blob sha256:fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499
acme/multi: marking blob sha256:f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc
acme/multi: marking manifest sha256:f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc 
acme/multi: marking blob sha256:f1ea50f0ab2e1d2faa47b5fc2d9191879421dd208aa79303c24bdb3f0b5bcd69
acme/multi: marking blob sha256:f53498fe6099a4448e1462ee8aef5053ce9a52c2d442d4fd1fa8938544e43027
acme/multi: marking manifest sha256:fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499 
acme/multi: marking blob sha256:b34ef51f1116405abeaeeb55378f917e4e481014577cce102a998c9078d86db8
acme/multi: marking blob sha256:19724265370326a4db0d6876ff4d3d93d5f703c3ac7f48468e77d020da95bc3c

10 blobs marked, 3 blobs and 0 manifests eligible for deletion
blob eligible for deletion: sha256:2b58d1cd3ebfa5652e47b400467fb722d8c6ce7a054e06a68a0aaa63c685823b
blob eligible for deletion: sha256:45258f3e3f93765819315c5fccc21d9565e90a7785b2617c2dc814b5a1e9b369
blob eligible for deletion: sha256:88cd8bbf4b614b0e2c6aaf71dd1a1469bbd432f7a644500c7efe7df3fe54eaa9
"""  # noqa: W291 - verbatim output: the registry ends some lines with a space

# `--dry-run --delete-untagged`: the index's platform manifests are untagged, so 2.8 does not
# mark them, nor their blobs (distribution#3178).
DRY_RUN_UNTAGGED = """\
acme/a
acme/a: marking manifest sha256:6b4aadaec59dbb60c76acc8138f5890c9c7334928bf4e2c46792c406073abe38 
acme/a: marking blob sha256:5f342a23d31fe523c65bea139e303d68d362f6571c67014158e706228fbdbfd5
acme/a: marking blob sha256:cf65f020cf016fb227349d92af5cae88d95190277690c97e859c4791f2a5fd74
acme/b
acme/multi
acme/multi: marking manifest sha256:9630f151bda50ee0b674c9589e9a1122e790c0dc8cf8848c1e2c227756a2e1eb 
acme/multi: marking blob sha256:fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499
acme/multi: marking blob sha256:f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc
manifest eligible for deletion: sha256:f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc
manifest eligible for deletion: sha256:fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499

6 blobs marked, 7 blobs and 2 manifests eligible for deletion
blob eligible for deletion: sha256:f1ea50f0ab2e1d2faa47b5fc2d9191879421dd208aa79303c24bdb3f0b5bcd69
blob eligible for deletion: sha256:f53498fe6099a4448e1462ee8aef5053ce9a52c2d442d4fd1fa8938544e43027
blob eligible for deletion: sha256:19724265370326a4db0d6876ff4d3d93d5f703c3ac7f48468e77d020da95bc3c
blob eligible for deletion: sha256:2b58d1cd3ebfa5652e47b400467fb722d8c6ce7a054e06a68a0aaa63c685823b
blob eligible for deletion: sha256:45258f3e3f93765819315c5fccc21d9565e90a7785b2617c2dc814b5a1e9b369
blob eligible for deletion: sha256:88cd8bbf4b614b0e2c6aaf71dd1a1469bbd432f7a644500c7efe7df3fe54eaa9
blob eligible for deletion: sha256:b34ef51f1116405abeaeeb55378f917e4e481014577cce102a998c9078d86db8
"""  # noqa: W291 - verbatim output: the registry ends some lines with a space

# A real `--delete-untagged` run with `log.level: info`: stdout, then the registry's log on stderr.
REAL_UNTAGGED_INFO_LOG = """\
acme/b
acme/multi
acme/multi: marking manifest sha256:9630f151bda50ee0b674c9589e9a1122e790c0dc8cf8848c1e2c227756a2e1eb 
acme/multi: marking blob sha256:fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499
acme/multi: marking blob sha256:f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc
manifest eligible for deletion: sha256:f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc
manifest eligible for deletion: sha256:fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499

3 blobs marked, 7 blobs and 2 manifests eligible for deletion
blob eligible for deletion: sha256:2b58d1cd3ebfa5652e47b400467fb722d8c6ce7a054e06a68a0aaa63c685823b
blob eligible for deletion: sha256:45258f3e3f93765819315c5fccc21d9565e90a7785b2617c2dc814b5a1e9b369
blob eligible for deletion: sha256:88cd8bbf4b614b0e2c6aaf71dd1a1469bbd432f7a644500c7efe7df3fe54eaa9
blob eligible for deletion: sha256:b34ef51f1116405abeaeeb55378f917e4e481014577cce102a998c9078d86db8
blob eligible for deletion: sha256:f1ea50f0ab2e1d2faa47b5fc2d9191879421dd208aa79303c24bdb3f0b5bcd69
blob eligible for deletion: sha256:f53498fe6099a4448e1462ee8aef5053ce9a52c2d442d4fd1fa8938544e43027
blob eligible for deletion: sha256:19724265370326a4db0d6876ff4d3d93d5f703c3ac7f48468e77d020da95bc3c
time="2026-11-29T05:00:11.267609217Z" level=info msg="deleting manifest: /docker/registry/v2/repositories/acme/multi/_manifests/revisions/sha256/f0a290c0d3b88c95d187b885156d77586953ca749cde25dd4dce52599f6fe6cc" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.268363363Z" level=info msg="deleting manifest: /docker/registry/v2/repositories/acme/multi/_manifests/revisions/sha256/fbefb3c56bec5a7dc4629b58b593cda99c1a313dfe6450599312bddfafdab499" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.268919958Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/2b/2b58d1cd3ebfa5652e47b400467fb722d8c6ce7a054e06a68a0aaa63c685823b" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.269136286Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/45/45258f3e3f93765819315c5fccc21d9565e90a7785b2617c2dc814b5a1e9b369" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.269341869Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/88/88cd8bbf4b614b0e2c6aaf71dd1a1469bbd432f7a644500c7efe7df3fe54eaa9" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.269525299Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/b3/b34ef51f1116405abeaeeb55378f917e4e481014577cce102a998c9078d86db8" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.269734032Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/f1/f1ea50f0ab2e1d2faa47b5fc2d9191879421dd208aa79303c24bdb3f0b5bcd69" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.269931387Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/f5/f53498fe6099a4448e1462ee8aef5053ce9a52c2d442d4fd1fa8938544e43027" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
time="2026-11-29T05:00:11.27012217Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/19/19724265370326a4db0d6876ff4d3d93d5f703c3ac7f48468e77d020da95bc3c" go.version=go1.19.8 instance.id=98858ef3-9c2e-4395-93e5-47b008ced1a7 service=registry
"""  # noqa: W291 - verbatim output: the registry ends some lines with a space

# `garbage-collect /nonexistent.yml`: exit code 1, stderr only.
BAD_CONFIG = """\
configuration error: open /nonexistent.yml: no such file or directory
Usage:
  registry garbage-collect <config> [flags]

Flags:
  -m, --delete-untagged   delete manifests that are not currently referenced via tag
  -d, --dry-run           do everything except remove the blobs
  -h, --help              help for garbage-collect
"""


def test_parse__dry_run__marked_per_repository_and_the_eligible_blobs() -> None:
    report = parse(DRY_RUN)
    assert report.repositories == ("acme/a", "acme/b", "acme/multi")
    # Unique digests: the index's children are marked as blobs and again as manifests.
    assert report.marked_by_repo == {"acme/a": 3, "acme/b": 0, "acme/multi": 7}
    assert report.summary == Summary(marked=10, blobs=3, manifests=0)
    assert report.marked == report.marked_digests == 10
    assert report.eligible_blobs == B_BLOBS
    assert report.eligible_manifests == () and report.deleted_blobs == () and report.errors == ()
    assert report.sweeping and report.phase == "sweeping"


def test_parse__delete_untagged__eligible_manifests_carry_the_repository_above_them() -> None:
    report = parse(DRY_RUN_UNTAGGED)
    assert report.eligible_manifests == (ManifestRef("acme/multi", ARM64), ManifestRef("acme/multi", AMD64))
    assert report.summary == Summary(marked=6, blobs=7, manifests=2)
    assert report.marked_by_repo == {"acme/a": 3, "acme/b": 0, "acme/multi": 3}
    assert set(report.eligible_blobs) == set(B_BLOBS) | set(CHILD_BLOBS)
    assert str(report.eligible_manifests[0]) == f"acme/multi@{ARM64}"


def test_parse__real_run_info_log__what_was_deleted() -> None:
    report = parse(REAL_UNTAGGED_INFO_LOG)
    assert report.deleted_manifests == (ManifestRef("acme/multi", ARM64), ManifestRef("acme/multi", AMD64))
    assert set(report.deleted_blobs) == set(B_BLOBS) | set(CHILD_BLOBS) and len(report.deleted_blobs) == 7
    assert report.errors == ()


def test_parse__json_log_lines__deletions_read_too() -> None:
    line = ('{"go.version":"go1.19.8","level":"info","msg":"Deleting blob: /docker/registry/v2/blobs/sha256/'
            f'2b/{B_BLOBS[0][7:]}","time":"2026-11-29T05:00:11Z"}}')
    assert parse(line).deleted_blobs == (B_BLOBS[0],)


def test_parse__bad_config__the_error_line_and_nothing_else() -> None:
    report = parse(BAD_CONFIG)
    assert report.errors == ("configuration error: open /nonexistent.yml: no such file or directory",)
    # "Usage:", "Flags:" and the indented usage are not repositories.
    assert report.repositories == () and report.summary is None and report.phase == "marking"


def test_parse__failure_without_a_trailing_newline() -> None:
    report = parse("acme/a\nfailed to garbage collect: failed to mark: filesystem: Path not found: /x")
    assert report.errors == ("failed to garbage collect: failed to mark: filesystem: Path not found: /x",)
    assert report.repositories == ("acme/a",)


def test_parser__fed_line_by_line__progress_before_and_after_the_summary() -> None:
    parser = Parser()
    lines = DRY_RUN.splitlines(keepends=True)
    at = lines.index("10 blobs marked, 3 blobs and 0 manifests eligible for deletion\n")
    parser.feed_all(lines[:at])
    assert parser.progress() == (10, 0, 0) and not parser.sweeping
    parser.feed_all(lines[at:at + 2])
    assert parser.progress() == (10, 3, 0) and parser.sweeping
    assert parser.report().eligible_blobs == B_BLOBS[:1]


def test_parse__a_word_after_the_summary_is_not_a_repository() -> None:
    report = parse(DRY_RUN + "done\n")
    assert report.repositories == ("acme/a", "acme/b", "acme/multi")


# -- storage ------------------------------------------------------------------------------------


def _blob(root: Path, digest: str, data: bytes) -> Path:
    path = disk.blob_data_path(root, digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_storage__sizes_of_blob_data_only(tmp_path: Path) -> None:
    (tmp_path / "docker/registry/v2/repositories/acme/a/_layers").mkdir(parents=True)
    _blob(tmp_path, B_BLOBS[0], b"x" * 100)
    _blob(tmp_path, B_BLOBS[1], b"y" * 20)
    partial = disk.blob_data_path(tmp_path, B_BLOBS[2]).parent
    partial.mkdir(parents=True)  # a blob directory without data (being written) counts nothing
    assert disk.blob_data_path(tmp_path, B_BLOBS[0]) == (
        tmp_path / "docker/registry/v2/blobs/sha256/2b" / B_BLOBS[0][7:] / "data")
    assert disk.scan_blobs(tmp_path) == {B_BLOBS[0]: 100, B_BLOBS[1]: 20}
    assert disk.storage_bytes(tmp_path) == 120
    assert disk.blob_sizes(tmp_path, [B_BLOBS[1], B_BLOBS[2], "not-a-digest"]) == {B_BLOBS[1]: 20}
    # The v2 directory itself is accepted too.
    assert disk.storage_bytes(tmp_path / "docker/registry/v2") == 120


def test_storage__missing_or_unreadable__nothing_not_an_error(tmp_path: Path) -> None:
    assert disk.v2_root(tmp_path / "nowhere") is None
    assert disk.scan_blobs(tmp_path / "nowhere") == {} and disk.storage_bytes(tmp_path) == 0
    if os.geteuid() != 0:
        _blob(tmp_path, B_BLOBS[0], b"x")
        v2 = tmp_path / "docker/registry/v2"
        v2.chmod(0)
        try:
            assert disk.v2_root(tmp_path) is None and disk.storage_bytes(tmp_path) == 0
        finally:
            v2.chmod(0o755)


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:", "../x", "sha256:abc/../../x" + "0" * 64])
def test_storage__paths_only_from_real_digests(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError):
        disk.blob_data_path(tmp_path, digest)


def test_manifest_link_path__repository_checked(tmp_path: Path) -> None:
    assert disk.manifest_link_path(tmp_path, "acme/multi", ARM64) == (
        tmp_path / "docker/registry/v2/repositories/acme/multi/_manifests/revisions/sha256" / ARM64[7:] / "link")
    with pytest.raises(ValueError):
        disk.manifest_link_path(tmp_path, "../acme", ARM64)
