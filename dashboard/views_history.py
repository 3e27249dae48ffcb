"""Placeholder: being written."""

from django.http import Http404



def tag_history(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404


def tag_rollback(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404
