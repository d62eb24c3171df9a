"""``agently-core doctor``: is a Docker engine reachable, and how to get one."""

from __future__ import annotations

import shutil
from typing import Any


def check_docker() -> list[dict[str, Any]]:
    """Checks: the engine answers; the default image is there (quick, no side effects)."""
    from .daemon import engine_answers
    from .engine import where
    from .images import DEFAULT_IMAGE

    host = where()
    if not engine_answers(host, timeout=3):
        installed = shutil.which("dockerd")
        fix = ("start it: dockerd & (or systemctl start docker), or set "
               "DOCKER_HOST" if installed else
               "apt-get install docker.io (./dev does), then dockerd &; or "
               "set DOCKER_HOST to a Docker or Podman socket")
        return [{"name": "Docker engine", "ok": False,
                 "detail": f"nothing answers at {host}"
                           + ("" if installed else "; dockerd is not installed"),
                 "fix": fix}]
    from .engine import client
    from .images import image_exists

    engine = client(timeout=5)
    version = engine.version().get("Version", "?")
    found = image_exists(DEFAULT_IMAGE, engine)
    return [{"name": "Docker engine", "ok": True, "detail": f"Docker {version} at {host}",
             "fix": None},
            {"name": "Docker default image", "ok": found,
             "detail": DEFAULT_IMAGE + (" is built" if found else " is missing"),
             "fix": None if found else "agently-core docker build-image"}]


__all__ = ["check_docker"]
