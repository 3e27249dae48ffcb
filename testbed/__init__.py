"""Real-registry test bed: run Distribution's registry binary and push known content into it.

Plain Python (no Django) so pytest fixtures, benchmarks and the demo command can share it:

    with RegistryServer(tmp_dir) as server:
        seeded = seed_standard(server.url, skopeo_workdir=tmp_dir / "skopeo")
        seeded.digest("acme/web", "latest")
"""

from .push import Image, PushError
from .seed import (
    Attachment,
    Kind,
    ManifestFact,
    Seeded,
    SeededRegistry,
    SeedError,
    seed_many_repos,
    seed_many_tags,
    seed_standard,
    start_seeded,
    tool_binaries,
)
from .server import Notifications, RegistryServer, RegistryStartError, registry_binary

__all__ = [
    "Attachment", "Image", "Kind", "ManifestFact", "Notifications", "PushError", "RegistryServer", "RegistryStartError",
    "Seeded", "SeededRegistry", "SeedError", "registry_binary", "seed_many_repos", "seed_many_tags",
    "seed_standard", "start_seeded", "tool_binaries",
]
