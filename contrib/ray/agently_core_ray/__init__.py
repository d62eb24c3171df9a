"""agently-core-ray: providers and action loops on a Ray cluster.

``run_many`` and ``resume_many`` are imported on first use (``import agently_core_ray`` stays light)."""

from __future__ import annotations

from typing import Any


def run_many(*args: Any, **kwargs: Any) -> Any:
    """See :func:`agently_core_ray.many.run_many`."""
    from .many import run_many as run

    return run(*args, **kwargs)


def resume_many(*args: Any, **kwargs: Any) -> Any:
    """See :func:`agently_core_ray.many.resume_many`."""
    from .many import resume_many as resume

    return resume(*args, **kwargs)


__all__ = ["resume_many", "run_many"]
