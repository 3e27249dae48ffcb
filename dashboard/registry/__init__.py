"""The registry client: no Django here, frozen dataclasses in and out, typed errors."""

from .client import BlobStream, RegistryClient, run_bounded
from .errors import *  # noqa: F403 - the package is the client's one front door: every error type
from .models import *  # noqa: F403 - and every dataclass, as the modules define them in __all__
from .names import attachment_target, is_digest, is_name, is_tag

__all__ = ["RegistryClient", "BlobStream", "run_bounded", "attachment_target", "is_digest", "is_name", "is_tag"]
