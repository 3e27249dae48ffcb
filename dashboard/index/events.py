"""Placeholder: being written."""


def apply_pending() -> int:
    return 0
