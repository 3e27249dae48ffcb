"""The registry client: no Django here, frozen dataclasses in and out, typed errors."""

from .client import BlobStream, RegistryClient, run_bounded
from .errors import *  # noqa: F403
from .models import *  # noqa: F403
from .names import attachment_target, is_digest, is_name, is_tag

__all__ = ["RegistryClient", "BlobStream", "run_bounded", "attachment_target", "is_digest", "is_name", "is_tag"]
