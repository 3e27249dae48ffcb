"""Placeholder: being written."""


def execute(run_id: int) -> None:
    return None
