"""Placeholder: being written."""

from django.http import Http404



def sync_page(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404


def sync_start(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404


def sync_run(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404
