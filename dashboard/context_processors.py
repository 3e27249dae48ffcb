from django.http import HttpRequest

from . import remote


def registry(request: HttpRequest) -> dict[str, str]:
    return {"registry_url": remote.registry_url(), "pull_host": remote.pull_host()}
