"""Placeholder: being written."""

from django.http import Http404



def storage(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404


def activity(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404
