"""Typed failures of the registry client.

Every message is written for the operator who reads it on a page: it names the
registry URL and says what to check, never a urllib3 repr.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base of everything the client raises."""

    #: HTTP status the dashboard should answer with when this error ends a page.
    http_status: int = 502

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.url = url

    def __str__(self) -> str:
        return self.message


class RegistryUnreachable(RegistryError):
    """Connection refused, DNS failure, reset: nothing answered."""


class RegistryTLSError(RegistryError):
    """TLS handshake or certificate verification failed, or the scheme is wrong."""


class RegistryTimeout(RegistryError):
    http_status = 504


class Unauthorized(RegistryError):
    """401/403: credentials are missing, wrong, or lack the permission."""


class NotFound(RegistryError):
    http_status = 404


class NameUnknown(NotFound):
    pass


class ManifestUnknown(NotFound):
    pass


class BlobUnknown(NotFound):
    pass


class UnsupportedOperation(RegistryError):
    """The registry refuses the operation (405 / UNSUPPORTED), e.g. deletion disabled.

    `code` tells the two 405s of distribution apart: "UNSUPPORTED" (a JSON error body) is
    deletion switched off; an empty code (a plain-text "Method not allowed") is the
    read-only maintenance mode, where the route has no write methods at all.
    """

    http_status = 405

    def __init__(self, message: str, *, url: str = "", status: int = 405, code: str = "",
                 detail: str = "", body: str = "") -> None:
        super().__init__(message, url=url)
        self.status = status
        self.code = code
        self.detail = detail
        #: The start of the registry's answer (decoded, at most 500 characters), for logs.
        self.body = body


class RegistryAPIError(RegistryError):
    """Any other error answer, with the registry's own code and message."""

    def __init__(self, message: str, *, url: str = "", status: int = 0,
                 code: str = "", detail: str = "") -> None:
        super().__init__(message, url=url)
        self.status = status
        self.code = code
        self.detail = detail


class _Mismatch(RegistryError):
    """What was expected, and what the registry has instead."""

    def __init__(self, message: str, *, url: str = "", expected: str = "", actual: str = "") -> None:
        super().__init__(message, url=url)
        self.expected = expected
        self.actual = actual


class IntegrityError(_Mismatch):
    """Bytes the registry sent do not hash to the digest they are addressed by."""


class MalformedContent(RegistryError):
    """The registry answered, but the content cannot be understood (not JSON, wrong shape)."""


class InvalidReference(RegistryError):
    """A repository name, tag or digest that the distribution grammar rejects.

    Raised before any request is made, so nothing odd reaches a registry URL.
    """

    http_status = 404


class Conflict(_Mismatch):
    """The registry changed under the user: e.g. the tag no longer points where they confirmed."""

    http_status = 409


class NotRestorable(RegistryError):
    """A deleted manifest cannot be put back: garbage collection removed content it needs."""

    http_status = 409

    def __init__(self, message: str, *, url: str = "", missing: list[str] | None = None) -> None:
        super().__init__(message, url=url)
        #: Every blob or child-manifest digest the manifest references that the registry lost.
        self.missing: list[str] = list(missing or [])
