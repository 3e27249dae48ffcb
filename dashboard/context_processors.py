from django.http import HttpRequest

from . import services


def registry(request: HttpRequest) -> dict[str, str]:
    return {"registry_url": services.registry_url(), "pull_host": services.pull_host()}
