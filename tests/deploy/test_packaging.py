"""No Docker engine here (nor in CI): the Dockerfile, the compose files, .env.example and the
registry config are kept honest by reading them and cross-checking them against the code, and the
parts that can run without an engine run for real (the registry binary on deploy/registry.yml,
`check --deploy`; tests/deploy/test_gunicorn.py starts the image's command).

Compose files are merged the way `docker compose -f docker-compose.yml -f compose.X.yml` merges
them (mappings by key, volumes by target, `!reset` / `!override`), and `${VAR:-default}` is
interpolated, so every check runs on each combination users can start.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from django.conf import settings
from django.urls import resolve

from testbed import registry_binary
from testbed.push import build_image, push_image
from testbed.server import free_port
from tests.helpers.servers import QuietHandler, serving

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in ROOT.glob("compose.*.yml"))
# The compose files' ${…:?} variables, as a user's .env would set them.
COMPOSE_ENV = {"POSTGRES_PASSWORD": "compose-test-password", "REGISTRYUI_SECRET_KEY": "k" * 60}
# Where each registry image reads its config (the GC command must name the same file).
REGISTRY_CONFIG_PATHS = {"registry:2": "/etc/docker/registry/config.yml", "registry:3": "/etc/distribution/config.yml"}
# Services built from our Dockerfile run our code; everything else is a third-party image.
OUR_IMAGE_ONLY_ENV = {"DATABASE_URL"}


# -- reading compose files like compose does ---------------------------------------------------------


class _Reset:
    pass


class _Override:
    def __init__(self, value: object) -> None:
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


def _construct_override(loader: yaml.Loader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    return _Override(loader.construct_scalar(node))


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
_ComposeLoader.add_constructor("!override", _construct_override)


def _load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)


def _target(entry: object) -> str:
    if isinstance(entry, dict):
        return str(entry.get("target"))
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _strip(value: object) -> object:
    """The value as compose sees it when nothing is under it: tags applied to nothing."""
    if isinstance(value, _Override):
        return _strip(value.value)
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not isinstance(v, _Reset)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _merge(base: object, over: object, key: str = "") -> object:
    if isinstance(over, _Override):
        return over.value
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            if isinstance(v, _Reset):
                merged.pop(k, None)
            elif k in merged:
                merged[k] = _merge(merged[k], v, k)
            else:
                merged[k] = _strip(v)
        return merged
    if isinstance(base, list) and isinstance(over, list):
        if key in ("command", "entrypoint", "test"):
            return over
        if key == "volumes":  # a service's mounts: one per target path
            by_target = {_target(v): v for v in base}
            by_target.update({_target(v): v for v in over})
            return list(by_target.values())
        return base + [v for v in over if v not in base]
    return over


def _interpolate(value: object, env: dict[str, str]) -> object:
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if op == ":-":
            return env.get(name) or arg
        if op == ":?":
            if not env.get(name):
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return env[name]
        return env.get(name, "")

    escaped = value.replace("$$", "\0")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}", one, escaped).replace("\0", "$")


def _combos() -> list[tuple[str, ...]]:
    # Each overlay alone, and all of them together (compose.tls.yml last, as its header says).
    everything = tuple(sorted(OVERLAYS, key=lambda n: n == "compose.tls.yml"))
    base = "docker-compose.yml"
    return [(base,), *((base, o) for o in OVERLAYS), (base, *everything)]


def _effective(files: tuple[str, ...]) -> dict:
    merged: object = {}
    for name in files:
        merged = _merge(merged, _load(name))
    assert isinstance(merged, dict)
    for extension in [k for k in merged if k.startswith("x-")]:
        del merged[extension]
    return _interpolate(merged, COMPOSE_ENV)  # type: ignore[return-value]


COMBOS = _combos()
COMBO_IDS = ["+".join(f.removeprefix("compose.").removesuffix(".yml") for f in c[1:]) or "base" for c in COMBOS]


@pytest.fixture(params=COMBOS, ids=COMBO_IDS)
def compose(request: pytest.FixtureRequest) -> dict:
    return _effective(request.param)


def _ours(compose: dict) -> dict[str, dict]:
    """The services that run our image (they have a build section)."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only)."""
    out = {}
    for v in service.get("volumes", []):
        parts = str(v).split(":")
        out[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return out


def _registry_image(compose: dict) -> str:
    return compose["services"]["registry"]["image"]


# -- what the code reads -----------------------------------------------------------------------------

_HELPERS = {"registryui/settings.py": ("env", "env_bool", "env_float", "env_secret"),
            "gunicorn.conf.py": ("_env", "_env_int")}


def _literal_environ_reads(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "get" and ast.unparse(f.value) == "os.environ") or \
                    ast.unparse(f) == "os.getenv":
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and \
                isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def code_env_vars() -> set[str]:
    """Every environment variable the settings, gunicorn.conf.py and the app read."""
    names: set[str] = set()
    for rel, helpers in _HELPERS.items():
        tree = ast.parse((ROOT / rel).read_text())
        inside_helpers = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name in helpers
                          for n in ast.walk(fn)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers \
                    and id(node) not in inside_helpers:
                arg = node.args[0]
                assert isinstance(arg, ast.Constant), f"{rel}: {ast.unparse(node)} — use a literal name"
                names.add(f"REGISTRYUI_{arg.value}")
                if node.func.id == "env_secret":
                    names.add(f"REGISTRYUI_{arg.value}_FILE")
    for path in [ROOT / "gunicorn.conf.py", *(ROOT / "registryui").rglob("*.py"), *(ROOT / "dashboard").rglob("*.py")]:
        names |= _literal_environ_reads(ast.parse(path.read_text()))
    # wsgi.py's setdefault of Django's own variable is no setting of ours.
    names.discard("DJANGO_SETTINGS_MODULE")
    return names


def _env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.fullmatch(r"#?\s?([A-Z][A-Z0-9_]*)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _compose_variables() -> set[str]:
    text = "\n".join((ROOT / f).read_text() for f in ("docker-compose.yml", *OVERLAYS))
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def test_code_env_vars__are_found() -> None:
    found = code_env_vars()
    # A sample of each kind, so a broken scan cannot pass everything below vacuously.
    assert {"REGISTRYUI_REGISTRY_URL", "REGISTRYUI_DEBUG", "REGISTRYUI_GC_TIMEOUT", "REGISTRYUI_SECRET_KEY_FILE",
            "REGISTRYUI_WEB_WORKERS", "REGISTRYUI_LISTEN", "DATABASE_URL", "DJANGO_SUPERUSER_PASSWORD"} <= found
    assert not [n for n in found if n.startswith("REGISTRY_")], "REGISTRY_* is the registry binary's own prefix"


# -- compose: environment ----------------------------------------------------------------------------


def test_compose__our_services_set_only_variables_the_code_reads(compose: dict) -> None:
    known = code_env_vars()
    for name, service in _ours(compose).items():
        for key in service.get("environment", {}):
            # REGISTRY_* would be read by a registry binary as its own configuration.
            assert key.startswith(("REGISTRYUI_", "DJANGO_SUPERUSER_")) or key in OUR_IMAGE_ONLY_ENV, (name, key)
            assert key in known, f"{name} sets {key}, which nothing reads"


def test_compose__our_services_read_env_file_and_the_registry_does_not(compose: dict) -> None:
    for name, service in compose["services"].items():
        env_files = [e["path"] if isinstance(e, dict) else e for e in service.get("env_file", [])]
        if name in _ours(compose):
            assert env_files == [".env"] and service["env_file"][0]["required"] is False, name
        else:
            # .env holds REGISTRYUI_* and secrets; the registry must not get them.
            assert not env_files, name


def test_compose__registry_settings_only_on_the_registry(compose: dict) -> None:
    for name, service in compose["services"].items():
        keys = list(service.get("environment", {}))
        if name != "registry":
            assert not [k for k in keys if k.startswith("REGISTRY_")], name


def test_env_example__lists_every_variable_the_code_reads_and_nothing_else() -> None:
    documented = _env_example()
    read = code_env_vars()
    assert read - set(documented) == set(), "add these to .env.example (and the README)"
    unknown = set(documented) - read - _compose_variables()
    assert unknown == set(), "documented in .env.example but read by nothing"
    assert not [n for n in documented if n.startswith("REGISTRY_")]
    # Every variable has a line of explanation above it (a comment that is not another variable).
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"# [A-Z][A-Z0-9_]*=.*", line):
            above = lines[i - 1]
            assert above.startswith("#") and above.strip() != "#", line


def test_env_example__defaults_match_the_code() -> None:
    """The defaults .env.example shows are the ones the settings use with nothing set."""
    documented = _env_example()
    out = subprocess.run(
        [sys.executable, "-c", (
            "import json, django; django.setup(); from django.conf import settings as s; "
            "print(json.dumps({'ALLOWED_HOSTS': ','.join(s.ALLOWED_HOSTS), 'URL': s.REGISTRYUI['REGISTRY_URL'], "
            "'CONCURRENCY': s.REGISTRYUI['CONCURRENCY'], 'HSTS': s.SECURE_HSTS_SECONDS, 'SSL': s.SECURE_SSL_REDIRECT, "
            "'GC_HOOK_TIMEOUT': s.REGISTRYUI['GC_HOOK_TIMEOUT'], 'TZ': s.TIME_ZONE}))")],
        cwd=ROOT, env=_clean_env(DJANGO_SETTINGS_MODULE="registryui.settings"), capture_output=True, text=True,
        check=True).stdout
    actual = json.loads(out)
    assert documented["REGISTRYUI_ALLOWED_HOSTS"] == actual["ALLOWED_HOSTS"]
    assert documented["REGISTRYUI_REGISTRY_URL"] == actual["URL"]
    assert int(documented["REGISTRYUI_CONCURRENCY"]) == actual["CONCURRENCY"]
    assert int(documented["REGISTRYUI_HSTS_SECONDS"]) == actual["HSTS"]
    assert documented["REGISTRYUI_SSL_REDIRECT"] == str(actual["SSL"]).lower()
    assert float(documented["REGISTRYUI_GC_HOOK_TIMEOUT"]) == actual["GC_HOOK_TIMEOUT"]
    assert documented["REGISTRYUI_TIME_ZONE"] == actual["TZ"]


def test_readme__configuration_reference_names_every_registryui_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in code_env_vars() if n.startswith("REGISTRYUI_") and f"`{n}`" not in readme)
    assert missing == []


def test_compose__postgres_and_redis_urls_have_their_drivers_in_the_image() -> None:
    requirements = (ROOT / "deploy" / "requirements.txt").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r deploy/requirements.txt" in dockerfile
    for combo in COMBOS:
        for service in _ours(_effective(combo)).values():
            env = service.get("environment", {})
            if env.get("DATABASE_URL", "").startswith("postgres"):
                assert re.search(r"^psycopg\[binary\]", requirements, re.MULTILINE)
            if env.get("REGISTRYUI_CACHE_URL", "").startswith("redis"):
                assert re.search(r"^redis\b", requirements, re.MULTILINE)


# -- compose: wiring ---------------------------------------------------------------------------------


def test_compose__dashboard_reaches_the_registry_service_by_name() -> None:
    compose = _effective(("docker-compose.yml",))
    url = compose["services"]["dashboard"]["environment"]["REGISTRYUI_REGISTRY_URL"]
    host, port = re.fullmatch(r"http://([^:/]+):(\d+)", url).groups()
    assert host in compose["services"]
    assert any(str(p).endswith(f":{port}") for p in compose["services"][host]["ports"])
    assert compose["services"]["registry"]["image"].startswith("registry:")
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    assert config["http"]["addr"] == f":{port}"


def test_compose__named_volumes_are_declared(compose: dict) -> None:
    used = {str(v).split(":", 1)[0] for s in compose["services"].values() for v in s.get("volumes", [])
            if not str(v).startswith((".", "/"))}
    assert used <= set(compose["volumes"])
    bound = {str(v).split(":", 1)[0] for s in compose["services"].values() for v in s.get("volumes", [])
             if str(v).startswith(".")}
    for source in bound:
        assert (ROOT / source).exists(), source
    for secret in compose.get("secrets", {}).values():
        # Made by the user (compose.htpasswd.yml says how), and never committed.
        path = secret["file"]
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False).returncode == 0, path


def test_compose__registry_storage_is_writable_only_by_the_registry_and_the_worker(compose: dict) -> None:
    registry = compose["services"]["registry"]
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    volume, read_only = _mounts(registry)[config["storage"]["filesystem"]["rootdirectory"]]
    assert not read_only
    writers = {name for name, s in compose["services"].items()
               for source, ro in _mounts(s).values() if source == volume and not ro}
    assert writers == {"registry", "worker"}
    assert volume in _mounts(compose["services"]["dashboard"]).get("/var/lib/registry", ())


def test_compose__worker_runs_gc_on_the_registrys_own_config_and_storage(compose: dict) -> None:
    worker, registry = compose["services"]["worker"], compose["services"]["registry"]
    assert worker["command"][:3] == ["python", "manage.py", "worker"]
    argv = shlex.split(worker["environment"]["REGISTRYUI_GC_COMMAND"])
    assert argv[:2] == ["registry", "garbage-collect"]
    config_path = argv[-1]
    # The registry image reads its config at this path; the GC command must read the same file.
    assert config_path == REGISTRY_CONFIG_PATHS[_registry_image(compose)]
    mounts, registry_mounts = _mounts(worker), _mounts(registry)
    assert mounts[config_path][0] == registry_mounts[config_path][0]
    assert (ROOT / mounts[config_path][0]).exists()
    storage = worker["environment"]["REGISTRYUI_STORAGE_PATH"]
    assert mounts[storage] == registry_mounts["/var/lib/registry"]
    # ... and the collector is the binary of that same registry image.
    dockerfile = (ROOT / "Dockerfile").read_text()
    default_image = re.search(r"^ARG REGISTRY_IMAGE=(\S+)$", dockerfile, re.MULTILINE).group(1)
    build = worker["build"] if isinstance(worker["build"], dict) else {}
    assert build.get("args", {}).get("REGISTRY_IMAGE", default_image) == _registry_image(compose)
    assert compose["services"]["dashboard"]["environment"]["REGISTRYUI_GC_COMMAND"] == \
        worker["environment"]["REGISTRYUI_GC_COMMAND"]


def test_compose__depends_on_waits_only_for_what_can_report_it(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, (name, target)
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], \
                    f"{name} waits for {target} to be healthy, which has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", (name, target)
    # The dashboard needs a registry that answers; the root worker must not be first to touch /data.
    assert services["dashboard"]["depends_on"]["registry"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["dashboard"]["condition"] == "service_healthy"


def test_compose__long_running_services_restart(compose: dict) -> None:
    for name, service in compose["services"].items():
        if name != "migrate":
            assert service.get("restart") == "unless-stopped", name


def test_compose__registry_debug_url_matches_the_registry_debug_addr(compose: dict) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    debug_port = config["http"]["debug"]["addr"].rsplit(":", 1)[1]
    assert config["http"]["debug"]["prometheus"] == {"enabled": True, "path": "/metrics"}
    for name in ("dashboard", "worker"):
        url = urlsplit(compose["services"][name]["environment"]["REGISTRYUI_REGISTRY_DEBUG_URL"])
        assert (url.scheme, url.hostname, str(url.port)) == ("http", "registry", debug_port), name
    # pprof and expvar live there too: never published.
    assert not [p for p in compose["services"]["registry"].get("ports", []) if str(p).endswith(f":{debug_port}")]


def _notifications_endpoint() -> dict:
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    [endpoint] = config["notifications"]["endpoints"]
    return endpoint


TOKEN_PLACEHOLDER = "@REGISTRYUI_EVENTS_TOKEN@"


def test_deploy__registry_notifies_the_dashboards_events_endpoint() -> None:
    endpoint = _notifications_endpoint()
    url = urlsplit(endpoint["url"])
    compose = _effective(("docker-compose.yml",))
    # The dashboard service, on the port its image listens on, at the events route.
    assert url.scheme == "http" and url.hostname in _ours(compose) and url.hostname == "dashboard"
    env = dict(kv.split("=", 1) for word, rest in _final_stage() if word == "ENV" for kv in shlex.split(rest))
    assert str(url.port) == env["REGISTRYUI_LISTEN"].rsplit(":", 1)[1]
    assert resolve(url.path).url_name == "events"
    # Plain HTTP inside the network: an HTTPS redirect would turn the registry's POST into a GET.
    assert any(re.search(p, url.path.lstrip("/")) for p in settings.SECURE_REDIRECT_EXEMPT), \
        "add the events path to SECURE_REDIRECT_EXEMPT"
    assert endpoint["headers"] == {"Authorization": [f"Bearer {TOKEN_PLACEHOLDER}"]}
    # Blob events (layers, configs) never reach the dashboard; a stuck dashboard is a short wait.
    assert endpoint["ignoredmediatypes"] == ["application/octet-stream"]
    timeout = re.fullmatch(r"(\d+)(ms|s)", endpoint["timeout"])
    assert timeout and int(timeout.group(1)) * (1 if timeout.group(2) == "s" else 0.001) <= 5
    assert endpoint["threshold"] >= 1 and re.fullmatch(r"\d+(ms|s)", endpoint["backoff"])
    # At info the registry logs each endpoint's headers, the token with them.
    assert yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())["log"]["level"] in ("warn", "error")


def test_compose__registry_and_dashboard_share_the_events_token(compose: dict) -> None:
    services = compose["services"]
    registry, dashboard = services["registry"], services["dashboard"]
    script = "/usr/local/bin/registry-entrypoint.sh"
    assert registry["entrypoint"] == ["/bin/sh", script]
    assert _mounts(registry)[script] == ("./deploy/registry-entrypoint.sh", True)
    config_path, token_file = registry["command"]
    # The registry image's own config path, holding deploy/registry.yml.
    assert config_path == REGISTRY_CONFIG_PATHS[_registry_image(compose)]
    assert _mounts(registry)[config_path] == ("./deploy/registry.yml", True)
    token_dir = str(Path(token_file).parent)
    volume, read_only = _mounts(registry)[token_dir]
    assert not read_only
    assert _mounts(dashboard)[token_dir] == (volume, True)
    assert dashboard["environment"]["REGISTRYUI_EVENTS_TOKEN_FILE"] == token_file
    # .env's token (when set) reaches the registry's entrypoint, which writes it to the file.
    assert registry["environment"]["REGISTRYUI_EVENTS_TOKEN"] == ""
    assert "REGISTRYUI_EVENTS_TOKEN: ${REGISTRYUI_EVENTS_TOKEN:-}" in (ROOT / "docker-compose.yml").read_text()
    # Only the registry and the dashboards see the token.
    holders = {name for name, s in services.items() if volume in {src for src, _ in _mounts(s).values()}}
    assert holders == {"registry", "dashboard"}
    # The registry reaches the dashboard by its service name: Django must accept that Host.
    host = urlsplit(_notifications_endpoint()["url"]).hostname
    for name in ("dashboard", "worker"):
        assert host in services[name]["environment"]["REGISTRYUI_ALLOWED_HOSTS"].split(","), name


def test_compose__worker_picks_up_events_within_a_second__and_starts_the_sync_schedule(compose: dict) -> None:
    from dashboard.management.commands.worker import Command

    command = compose["services"]["worker"]["command"]
    # `worker`: db_worker that queues the index's first sync as it starts (tests/index/test_worker.py).
    assert command[:3] == ["python", "manage.py", "worker"]
    # Parsed by the command itself (db_worker's options), so a misspelt option fails here and not in production.
    options = Command().create_parser("manage.py", "worker").parse_args(command[3:])
    assert options.interval <= 0.5


def _healthcheck_command(text: str) -> list[str]:
    line = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text.replace("\\\n", ""), re.MULTILINE)
    return json.loads(line.group(1))


def _url_paths(command: list[str]) -> list[str]:
    """Paths of the URLs a probe fetches: whole URLs, or a path literal the code appends to one."""
    text = " ".join(command)
    return re.findall(r"https?://[^/'\"\s]+(/[^'\"\s,)]*)", text) + re.findall(r"'(/[-\w./]*)'", text)


def test_healthchecks__name_real_routes() -> None:
    image_check = _healthcheck_command((ROOT / "Dockerfile").read_text())
    assert image_check[:2] == ["python", "-c"] and "urllib" in image_check[2]
    assert [resolve(p).url_name for p in _url_paths(image_check)] == ["live"]
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    registry_ports = {config["http"]["addr"].rsplit(":", 1)[1]: ("/v2/",),
                      config["http"]["debug"]["addr"].rsplit(":", 1)[1]: ("/debug/health",)}
    for combo in COMBOS:
        services = _effective(combo)["services"]
        for name, service in _ours({"services": services}).items():
            if "healthcheck" in service:
                # The same probe as the image's HEALTHCHECK, so the two cannot drift apart.
                assert service["healthcheck"]["test"] == ["CMD", *image_check], name
        test = services["registry"]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "wget"], "registry images are Alpine: busybox wget, no curl"
        url = urlsplit(test[-1])
        assert url.hostname == "localhost" and url.path in registry_ports[str(url.port)], test
    assert "healthcheck" in _effective(("docker-compose.yml",))["services"]["dashboard"]


def test_compose__tls_proxy_points_at_real_services_and_ports() -> None:
    compose = _effective(("docker-compose.yml", "compose.tls.yml"))
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    upstreams = {(a or b, int(c or d)) for a, c, b, d in
                 re.findall(r"dynamic a (\w+) (\d+)|reverse_proxy (\w+):(\d+)", caddyfile)}
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    dashboard_port = int(_effective(("docker-compose.yml",))["services"]["dashboard"]["ports"][0].split(":")[-1])
    assert upstreams == {("dashboard", dashboard_port), ("registry", int(config["http"]["addr"].rsplit(":", 1)[1]))}
    # Only the proxy is published: BEHIND_PROXY trusts X-Forwarded-* from whoever reaches the port.
    published = {name for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"proxy"}
    env = compose["services"]["dashboard"]["environment"]
    assert env["REGISTRYUI_BEHIND_PROXY"] == "true" and env["REGISTRYUI_SECURE_COOKIES"] == "true"
    public_host = env["REGISTRYUI_ALLOWED_HOSTS"].split(",")[0]
    assert env["REGISTRYUI_CSRF_TRUSTED_ORIGINS"] == f"https://{public_host}"
    assert "{$PUBLIC_HOST" in caddyfile and compose["services"]["proxy"]["environment"]["PUBLIC_HOST"]


def test_compose__htpasswd_password_reaches_the_dashboard_as_a_secret_file() -> None:
    compose = _effective(("docker-compose.yml", "compose.htpasswd.yml"))
    registry = compose["services"]["registry"]
    assert registry["environment"]["REGISTRY_AUTH"] == "htpasswd"
    assert registry["environment"]["REGISTRY_AUTH_HTPASSWD_PATH"] == f"/run/secrets/{registry['secrets'][0]}"
    for name in ("dashboard", "worker"):
        service = compose["services"][name]
        env = service["environment"]
        assert "REGISTRYUI_REGISTRY_PASSWORD" not in env
        assert env["REGISTRYUI_REGISTRY_PASSWORD_FILE"] == f"/run/secrets/{service['secrets'][0]}"
        assert env["REGISTRYUI_REGISTRY_USERNAME"]


def test_compose__postgres_runs_migrations_once_for_two_dashboards() -> None:
    compose = _effective(("docker-compose.yml", "compose.postgres.yml"))
    services = compose["services"]
    assert services["dashboard"]["deploy"]["replicas"] == 2
    # Every replica its own host port; the base file's single 8000:8000 would collide.
    assert services["dashboard"]["ports"] == ["8000-8001:8000"]
    migrate = " ".join(services["migrate"]["command"])
    assert "migrate" in migrate and "ensure_admin" in migrate
    assert "migrate" not in " ".join(services["dashboard"]["command"])
    for name in ("dashboard", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Replicas must share one secret key (a generated one would differ per container).
    keys = {services[n]["environment"]["REGISTRYUI_SECRET_KEY"] for n in ("migrate", "dashboard", "worker")}
    assert keys == {COMPOSE_ENV["REGISTRYUI_SECRET_KEY"]}
    with pytest.raises(AssertionError, match="REGISTRYUI_SECRET_KEY"):
        _interpolate(_load("compose.postgres.yml"), {"POSTGRES_PASSWORD": "x"})


# -- Dockerfile --------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _json_instruction(word: str) -> list[str]:
    [value] = [rest for w, rest in _final_stage() if w == word]
    return json.loads(value)


def test_dockerfile__multi_stage_slim_non_root() -> None:
    instructions = _dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 3, "registry binary, build, image"
    assert "ARG PYTHON_IMAGE=python:3.13-slim" in (ROOT / "Dockerfile").read_text()
    assert froms[-1] == "${PYTHON_IMAGE}"
    users = [rest for word, rest in _final_stage() if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"


def test_dockerfile__copies_every_path_that_exists_and_skips_what_dockerignore_drops() -> None:
    ignored = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith(("#", "!"))]
    sources = []
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            *srcs, _dest = shlex.split(rest)
            sources += srcs
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not [p for p in ignored if fnmatch(source, p) or fnmatch(source, p + "/*")], source
    for needed in ("gunicorn.conf.py", "manage.py", "registryui", "dashboard", "templates", "static", "pyproject.toml"):
        assert needed in sources, needed
    # Local state, secrets and caches never reach the build context.
    for path in (".venv", "var", ".demo", ".env", "deploy/secrets", "test-artifacts", "staticfiles", ".git"):
        assert path in ignored, path
    assert "COPY --from=registry-binary /bin/registry /usr/local/bin/registry" in (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{REGISTRY_IMAGE\} AS registry-binary$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_dockerfile__command_runs_real_modules_and_commands() -> None:
    from django.core.management import get_commands

    cmd = _json_instruction("CMD")
    assert cmd[:2] == ["sh", "-c"]
    steps = [shlex.split(step) for step in cmd[2].split("&&")]
    commands = get_commands()
    for step in steps:
        if step[:2] == ["python", "manage.py"]:
            assert step[2] in commands, step
    *_, gunicorn = steps
    assert gunicorn[:2] == ["exec", "gunicorn"]
    config = gunicorn[gunicorn.index("-c") + 1]
    assert (ROOT / config).exists()
    module = gunicorn[-1]
    wsgi = ROOT / (module.replace(".", "/") + ".py")
    assert "application = " in wsgi.read_text()
    # The worker's command exists too.
    assert "worker" in commands
    # The migrate service and the dashboards of compose.postgres.yml run the same pieces.
    services = _effective(("docker-compose.yml", "compose.postgres.yml"))["services"]
    assert services["dashboard"]["command"] == gunicorn[1:]
    assert services["migrate"]["command"][2] == " && ".join(" ".join(s) for s in steps[:-1])


def test_dockerfile__static_files_use_the_manifest_storage_in_the_image() -> None:
    instructions = _dockerfile_instructions()
    [collect] = [rest for word, rest in instructions if word == "RUN" and "collectstatic" in rest]
    assert "REGISTRYUI_STATIC_MANIFEST=true" in collect.split("collectstatic")[0]
    assert "staticfiles.json" in collect
    env = " ".join(rest for word, rest in _final_stage() if word == "ENV")
    assert "REGISTRYUI_STATIC_MANIFEST=true" in env
    assert any(word == "COPY" and rest.startswith("--from=build /app") for word, rest in _final_stage())


def test_dockerfile__listens_where_compose_expects() -> None:
    env = dict(kv.split("=", 1) for word, rest in _final_stage() if word == "ENV" for kv in shlex.split(rest))
    port = env["REGISTRYUI_LISTEN"].rsplit(":", 1)[1]
    assert env["REGISTRYUI_LISTEN"].startswith("0.0.0.0:")
    assert [rest for word, rest in _final_stage() if word == "EXPOSE"] == [port]
    assert env["REGISTRYUI_DATA_DIR"] == "/data"
    dashboard = _effective(("docker-compose.yml",))["services"]["dashboard"]
    assert dashboard["ports"] == [f"{port}:{port}"]
    assert _mounts(dashboard)["/data"] == ("dashboard-data", False)


def test_gitignore__keeps_local_state_out_of_git() -> None:
    paths = [".venv/x", "var/db.sqlite3", ".demo/x", "staticfiles/x", "deploy/secrets/htpasswd"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True,
                             check=False).stdout.split()
    assert ignored == paths
    assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT, check=False).returncode == 1


# -- what runs without an engine ---------------------------------------------------------------------


def test_deploy__registry_config_allows_delete_and_has_no_stale_blob_cache() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())
    assert config["storage"]["delete"]["enabled"] is True
    assert "cache" not in config["storage"]
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRYUI_", "REGISTRY_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    return {**env, **extra}


def test_deploy__real_registry_serves_and_collects_garbage_with_the_shipped_config(tmp_path: Path) -> None:
    """deploy/registry.yml on Distribution's own binary (Debian's 2.8): the API, the debug server
    with Prometheus metrics, and `garbage-collect` on the same file, as the worker runs it. Only
    the paths and addresses change, through the registry's own REGISTRY_* overrides."""
    binary = registry_binary()
    storage = tmp_path / "storage"
    port = free_port()
    debug_port = free_port()
    while debug_port == port:
        debug_port = free_port()
    env = _clean_env(REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=str(storage),
                     REGISTRY_HTTP_ADDR=f"127.0.0.1:{port}", REGISTRY_HTTP_DEBUG_ADDR=f"127.0.0.1:{debug_port}")
    config = str(ROOT / "deploy" / "registry.yml")
    log = (tmp_path / "registry.log").open("w")
    proc = subprocess.Popen([binary, "serve", config], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _serving(proc, port, tmp_path / "registry.log"), "the registry")
        assert requests.get(f"http://127.0.0.1:{debug_port}/debug/health", timeout=5).status_code == 200
        metrics = requests.get(f"http://127.0.0.1:{debug_port}/metrics", timeout=5).text
        assert "registry_http_requests_total" in metrics
        image = build_image([{"gc.txt": b"collect me\n"}])
        push_image(f"http://127.0.0.1:{port}", "packaging/gc", image, "1")
        # Deletion is enabled: the manifest goes, and the collector finds its blobs.
        deleted = requests.delete(f"http://127.0.0.1:{port}/v2/packaging/gc/manifests/{image.digest}", timeout=5)
        assert deleted.status_code == 202
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    gc_env = {k: v for k, v in env.items() if not k.startswith("REGISTRY_HTTP")}
    result = subprocess.run([binary, "garbage-collect", "--dry-run", config], env=gc_env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # The config, the layer and the manifest itself: nothing marked, all three collectable.
    assert "0 blobs marked, 3 blobs and 0 manifests eligible for deletion" in result.stdout, result.stdout


class _Listener(QuietHandler):
    """Records each POST's headers and JSON body (in ``server.received``) and answers 200."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append((dict(self.headers), json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()


def _wait_for(predicate, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _serving(proc: subprocess.Popen, port: int, log: Path) -> bool:
    """Whether the registry started as `proc` answers on `port` (it must not have exited)."""
    assert proc.poll() is None, log.read_text()
    try:
        return requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("from_env", [True, False], ids=["token-from-env", "token-generated"])
def test_deploy__registry_entrypoint_sends_the_shared_token_with_manifest_events(tmp_path: Path,
                                                                                 from_env: bool) -> None:
    """deploy/registry-entrypoint.sh on Debian's registry binary, as compose runs it: the token
    (from REGISTRYUI_EVENTS_TOKEN, or generated into the file the dashboard reads) goes out as
    the bearer token of every event, and only manifest events are sent."""
    received: list[tuple[dict[str, str], dict]] = []
    with serving(_Listener, received=received) as listener:
        # The shipped config, with only what this machine needs changed: the listener for the
        # dashboard, local paths and ports (the registry's REGISTRY_* overrides cannot reach a
        # list entry such as the endpoint).
        config = tmp_path / "registry.yml"
        config.write_text((ROOT / "deploy" / "registry.yml").read_text().replace(
            _notifications_endpoint()["url"], f"{listener}/-/events/"))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "registry").symlink_to(registry_binary())  # the name the images use
        port = free_port()
        token_file = tmp_path / "events-token"
        env = _clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}", TMPDIR=str(tmp_path),
                         REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=str(tmp_path / "storage"),
                         REGISTRY_HTTP_ADDR=f"127.0.0.1:{port}", REGISTRY_HTTP_DEBUG_ADDR=f"127.0.0.1:{free_port()}")
        if from_env:
            env["REGISTRYUI_EVENTS_TOKEN"] = "from-dot-env_" + secrets.token_urlsafe(16)
        log = (tmp_path / "registry.log").open("w")
        proc = subprocess.Popen(["/bin/sh", str(ROOT / "deploy" / "registry-entrypoint.sh"), str(config),
                                 str(token_file)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: _serving(proc, port, tmp_path / "registry.log"), "the registry")
            token = token_file.read_text()
            if from_env:
                assert token == env["REGISTRYUI_EVENTS_TOKEN"]
            else:
                assert re.fullmatch(r"[A-Za-z0-9]{43}", token)
            assert token_file.stat().st_mode & 0o777 == 0o440
            image = build_image([{"events.txt": b"tell the dashboard\n"}])
            push_image(f"http://127.0.0.1:{port}", "packaging/events", image, "1")
            _wait_for(lambda: received, "the push event")
            headers, envelope = received[0]
            assert headers["Authorization"] == f"Bearer {token}"
            assert headers["Content-Type"] == "application/vnd.docker.distribution.events.v1+json"
            [event] = envelope["events"]  # the manifest push; its config and layer uploads are not sent
            assert (event["action"], event["target"]["repository"], event["target"]["tag"],
                    event["target"]["digest"]) == ("push", "packaging/events", "1", image.digest)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
    # The token never reaches the registry's log.
    assert token not in (tmp_path / "registry.log").read_text()


def test_deploy__registry_entrypoint_refuses_a_token_that_would_break_the_config(tmp_path: Path) -> None:
    env = _clean_env(REGISTRYUI_EVENTS_TOKEN="abc]\ndef", TMPDIR=str(tmp_path))
    result = subprocess.run(["/bin/sh", str(ROOT / "deploy" / "registry-entrypoint.sh"),
                             str(ROOT / "deploy" / "registry.yml"), str(tmp_path / "events-token")],
                            env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 64
    assert "REGISTRYUI_EVENTS_TOKEN may only contain" in result.stderr
    assert not (tmp_path / "registry-config.yml").exists()


PRODUCTION_ENV = {
    "REGISTRYUI_SECRET_KEY": secrets.token_urlsafe(50),
    "REGISTRYUI_DEBUG": "false",
    "REGISTRYUI_ALLOWED_HOSTS": "registry.example.test",
    "REGISTRYUI_CSRF_TRUSTED_ORIGINS": "https://registry.example.test",
    "REGISTRYUI_SECURE_COOKIES": "true",
    "REGISTRYUI_SSL_REDIRECT": "true",
    "REGISTRYUI_HSTS_SECONDS": "31536000",
    "REGISTRYUI_HSTS_INCLUDE_SUBDOMAINS": "true",
    "REGISTRYUI_HSTS_PRELOAD": "true",
    "REGISTRYUI_BEHIND_PROXY": "true",
}


def test_settings__check_deploy_passes_with_the_production_environment(tmp_path: Path) -> None:
    env = _clean_env(**PRODUCTION_ENV, REGISTRYUI_DATA_DIR=str(tmp_path / "data"),
                     REGISTRYUI_STATIC_ROOT=str(tmp_path / "static"))
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_settings__defaults_keep_plain_http_working(tmp_path: Path) -> None:
    """Without the production variables nothing forces HTTPS (local runs, the test suite), and
    `check --deploy` says which of them are missing."""
    env = _clean_env(REGISTRYUI_DATA_DIR=str(tmp_path / "data"), REGISTRYUI_STATIC_ROOT=str(tmp_path / "static"))
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout, warning
    assert not settings.SECURE_SSL_REDIRECT and settings.SECURE_HSTS_SECONDS == 0
    assert settings.SECURE_PROXY_SSL_HEADER is None and not settings.USE_X_FORWARDED_HOST
