"""The dashboard's way into the registry: one pooled client, a cache for what is addressed by
digest (a manifest or config never changes once pushed), and what the registry allows (deletes)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from urllib.parse import urlsplit

from django.core.cache import cache

from . import conf
from .metrics import cache_lookup
from .registry import RegistryClient, ops
from .registry import models as m
from .registry.client import run_bounded
from .registry.errors import RegistryError
from .registry.names import is_digest
from .registry.parse import parse_config, parse_manifest

# A day is long enough to make pages fast and short enough that GC'd digests age out.
DIGEST_TTL = 24 * 3600
#: Every request the dashboard makes says so; the events endpoint drops the registry's reports of them.
USER_AGENT_PREFIX = "registryui/"


def client() -> RegistryClient:
    """The pooled client for the configured registry (a new one if the settings change)."""
    cfg = conf.get()
    return _client_for(m.RegistryConfig(
        url=cfg.registry_url, username=cfg.username, password=cfg.password, ca_bundle=cfg.ca_bundle,
        insecure=cfg.insecure, connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout,
        pool_size=cfg.concurrency, user_agent=f"{USER_AGENT_PREFIX}{cfg.version}"))


@lru_cache(maxsize=4)
def _client_for(config: m.RegistryConfig) -> RegistryClient:
    from .metrics import observe_registry

    return RegistryClient(config, observer=observe_registry)


def concurrency() -> int:
    return max(1, conf.get().concurrency)


def registry_url() -> str:
    return conf.get().registry_url


def pull_host() -> str:
    return conf.get().pull_host or urlsplit(registry_url()).netloc


def cache_key(kind: str, what: str) -> str:
    """The cache key of `what` for this registry. Digest-addressed content is the same on any
    registry, but the cache may be shared by dashboards of different registries: keep them apart."""
    scope = hashlib.sha256(registry_url().encode()).hexdigest()[:12]
    return f"rui:{scope}:{kind}:{what}"


def manifest_by_digest(name: str, digest: str) -> m.Manifest:
    """The manifest, from the cache when known (the caller has confirmed it is in `name`)."""
    key = cache_key("manifest", digest)
    hit = cache.get(key)
    cache_lookup("manifest", hit is not None, hit is None)
    if hit is not None:
        raw, media_type = hit
        return parse_manifest(raw, media_type=media_type, digest=digest)
    raw, media_type, verified = client().manifest_bytes(name, digest)
    cache.set(key, (raw, media_type), DIGEST_TTL)
    return parse_manifest(raw, media_type=media_type, digest=verified)


def manifest_by_tag(name: str, tag: str) -> m.Manifest:
    """A tag can move, so it is always read; what it points at is cached by digest."""
    raw, media_type, digest = client().manifest_bytes(name, tag)
    cache.set(cache_key("manifest", digest), (raw, media_type), DIGEST_TTL)
    return parse_manifest(raw, media_type=media_type, digest=digest)


def manifest(name: str, reference: str) -> m.Manifest:
    """By tag or by digest; a digest is confirmed to be in `name` (HEAD) before the cache answers."""
    if is_digest(reference):
        return manifest_by_digest(name, client().head_manifest(name, reference).digest)
    return manifest_by_tag(name, reference)


def config_by_digest(name: str, digest: str) -> m.ImageConfig:
    key = cache_key("config", digest)
    raw = cache.get(key)
    cache_lookup("config", raw is not None, raw is None)
    if raw is None:
        raw = client().blob_bytes(name, digest)
        cache.set(key, raw, DIGEST_TTL)
    return parse_config(raw, digest=digest)


def many_by_digest(name: str, kind: str, digests: list[str]) -> dict[str, m.Manifest | m.ImageConfig | RegistryError]:
    """Manifests or configs by digest: one cache round trip for the hits, bounded concurrency
    for the misses, failures returned in place."""
    keys = {cache_key(kind, d): d for d in digests}
    hits = cache.get_many(list(keys))
    cache_lookup(kind, len(hits), len(keys) - len(hits))
    found: dict[str, m.Manifest | m.ImageConfig | RegistryError] = {}
    for key, value in hits.items():
        digest = keys[key]
        if kind == "manifest":
            found[digest] = parse_manifest(value[0], media_type=value[1], digest=digest)
        else:
            found[digest] = parse_config(value, digest=digest)
    missing = [d for d in digests if d not in found]
    fetch = manifest_by_digest if kind == "manifest" else config_by_digest
    found.update(zip(missing, run_bounded(lambda d: fetch(name, d), missing, concurrency()), strict=True))
    return found


def catalog() -> list[str]:
    """The whole catalog, re-read at most every CATALOG_TTL seconds."""
    ttl = conf.get().catalog_ttl
    key = cache_key("catalog", "all")
    if ttl > 0:
        hit = cache.get(key)
        if hit is not None:
            return hit
    names = sorted(client().catalog())
    if ttl > 0:
        cache.set(key, names, ttl)
    return names


# -- what the registry allows --------------------------------------------------------------------

# The registry's answer to a delete probe changes only when the operator reconfigures it.
SUPPORT_TTL = 60


def delete_support(name: str) -> ops.DeleteSupport:
    """Whether the registry deletes at all, learned from its answer to a harmless probe."""
    key = cache_key("registry", "delete-support")
    hit = cache.get(key)
    if hit is not None:
        return ops.DeleteSupport(*hit)
    try:
        support = ops.probe_delete(client(), name)
    except RegistryError as exc:
        return ops.DeleteSupport(enabled=False, reason=f"cannot tell whether the registry allows deleting: {exc}")
    cache.set(key, (support.enabled, support.reason, support.read_only), SUPPORT_TTL)
    return support


def forget_delete_support() -> None:
    cache.delete(cache_key("registry", "delete-support"))


def tag_delete_known() -> bool | None:
    """Whether the registry deletes tags (3.x) or not (2.8), once a real untag has shown it."""
    return cache.get(cache_key("registry", "tag-delete"))


def learn_tag_delete(tag_delete: bool) -> None:
    cache.set(cache_key("registry", "tag-delete"), tag_delete, None)
