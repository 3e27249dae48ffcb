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
    used = {v.split(":", 1)[0] for s in compose["services"].values() for v in s.get("volumes", [])}
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
