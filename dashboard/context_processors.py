from django.http import HttpRequest

from . import remote
from .auth import can_browse


def registry(request: HttpRequest) -> dict[str, object]:
    # can_browse: the top bar offers only what the visitor may open (AccessMiddleware's rule).
    return {"registry_url": remote.registry_url(), "pull_host": remote.pull_host(), "can_browse": can_browse(request)}
