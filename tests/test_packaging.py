"""No Docker engine here, so the compose file and Dockerfile are kept honest by reading them."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose__dashboard_settings_use_only_registryui_prefix_and_exist_in_settings() -> None:
    env = _compose()["services"]["dashboard"]["environment"]
    settings_source = (ROOT / "registryui" / "settings.py").read_text()
    for key in env:
        # REGISTRY_* would be read by the registry binary as its own configuration.
        assert key.startswith("REGISTRYUI_") or key == "DATABASE_URL", key
        assert f'env("{key.removeprefix("REGISTRYUI_")}"' in settings_source or key == "DATABASE_URL", key


def test_compose__dashboard_reaches_the_registry_service_by_name() -> None:
    compose = _compose()
    url = compose["services"]["dashboard"]["environment"]["REGISTRYUI_REGISTRY_URL"]
    host, port = re.fullmatch(r"http://([^:/]+):(\d+)", url).groups()
    assert host in compose["services"]
    assert any(str(p).endswith(f":{port}") for p in compose["services"][host]["ports"])
    assert compose["services"]["registry"]["image"].startswith("registry:")


def test_compose__named_volumes_are_declared() -> None:
    compose = _compose()
    used = {v.split(":", 1)[0] for s in compose["services"].values() for v in s.get("volumes", [])
            if not v.startswith((".", "/"))}
    assert used <= set(compose["volumes"])


def test_dockerfile__copied_paths_exist_and_command_targets_real_modules() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = shlex.split(line)[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    assert "registryui.wsgi" in text
    assert (ROOT / "registryui" / "wsgi.py").exists()
    assert re.search(r"^USER (?!root)", text, re.M), "the image must not run as root"


def test_gitignore__keeps_local_state_out_of_git() -> None:
    ignored = subprocess.run(["git", "check-ignore", ".venv/x", "var/db.sqlite3", ".demo/x", "staticfiles/x"],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == [".venv/x", "var/db.sqlite3", ".demo/x", "staticfiles/x"]


def test_compose__worker_runs_gc_on_the_registrys_own_config_and_storage() -> None:
    compose = _compose()
    worker, registry = compose["services"]["worker"], compose["services"]["registry"]
    assert worker["command"][-1] == "db_worker"
    config_path = shlex.split(worker["environment"]["REGISTRYUI_GC_COMMAND"])[-1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    registry_mounts = {v.split(":")[1]: v.split(":")[0] for v in registry["volumes"]}
    # The worker collects garbage with the file the registry runs with, on the same volume.
    assert mounts[config_path] == registry_mounts["/etc/docker/registry/config.yml"]
    assert (ROOT / mounts[config_path]).exists()
    storage = worker["environment"]["REGISTRYUI_STORAGE_PATH"]
    assert mounts[storage] == registry_mounts["/var/lib/registry"]
    assert not any(v.endswith(":ro") for v in worker["volumes"] if v.startswith("registry-data"))
    assert shlex.split(worker["environment"]["REGISTRYUI_GC_COMMAND"])[0] == "registry"
    assert "COPY --from=registry:2 /bin/registry /usr/local/bin/registry" in (ROOT / "Dockerfile").read_text()


def test_deploy__registry_config_allows_delete_and_has_no_stale_blob_cache() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    assert config["storage"]["delete"]["enabled"] is True
    assert "cache" not in config["storage"]
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
