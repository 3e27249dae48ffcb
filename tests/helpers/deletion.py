"""A repository of four versions and `latest` on a fresh registry, for deleting and restoring."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from testbed import RegistryServer
from testbed.push import MANIFEST_ACCEPT, build_image, push_image

REPO = "team/app"


@dataclass
class Fixture:
    server: RegistryServer
    digests: dict[str, str]  # tag -> digest as pushed

    def tags(self) -> list[str]:
        r = requests.get(f"{self.server.url}/v2/{REPO}/tags/list", timeout=5)
        return sorted(r.json().get("tags") or [])

    def digest(self, tag: str) -> str | None:
        r = requests.head(
            f"{self.server.url}/v2/{REPO}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}, timeout=5
        )
        return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


def seed_versions(server: RegistryServer) -> dict[str, str]:
    images = {
        v: build_image([{f"v{v}.txt": f"version {v}\n".encode() * 50}], created=f"2024-0{i + 1}-01T00:00:00Z")
        for i, v in enumerate(["1.0.0", "1.2.4", "2.0.0", "3.0.0"])
    }
    digests = {v: push_image(server.url, REPO, img, v) for v, img in images.items()}
    digests["latest"] = push_image(server.url, REPO, images["1.2.4"], "latest")
    return digests
