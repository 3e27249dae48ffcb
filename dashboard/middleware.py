from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .registry import errors as e
from .registry.names import is_name
from .web import error_page

log = logging.getLogger(__name__)


class RegistryErrorMiddleware:
    """A registry failure ends a page with an explanation and a fitting status, never a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, e.RegistryError):
            return None
        if not isinstance(exception, (e.NotFound, e.InvalidReference)):
            log.warning("registry error on %s: %s", request.path, exception)
        # Within a repository that exists, the way on is back to it, not to the catalog.
        match = getattr(request, "resolver_match", None)
        name = match.kwargs.get("name", "") if match else ""
        missing_inside = isinstance(exception, e.NotFound) and not isinstance(exception, e.NameUnknown)
        repository = name if missing_inside and is_name(name) else ""
        return error_page(request, _title(exception), exception, exception.http_status, repository,
                          no_registry=isinstance(exception, e.RegistryUnreachable))


def _title(exc: e.RegistryError) -> str:
    return {
        e.InvalidReference: "Not a valid name",
        e.NameUnknown: "Repository not found",
        e.ManifestUnknown: "Manifest not found",
        e.BlobUnknown: "Blob not found",
        e.RegistryUnreachable: "The registry cannot be reached",
        e.RegistryTLSError: "TLS problem talking to the registry",
        e.RegistryTimeout: "The registry did not answer in time",
        e.Unauthorized: "The registry refused access",
        e.IntegrityError: "The registry sent content that does not match its digest",
        e.MalformedContent: "The registry sent something unreadable",
        e.UnsupportedOperation: "The registry does not support this",
    }.get(type(exc), "Not found" if isinstance(exc, e.NotFound) else "The registry answered with an error")
