"""Placeholder: being written."""

from django.http import Http404



def search(request, **kwargs):  # noqa: ANN001, ANN003
    raise Http404
