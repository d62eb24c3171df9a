"""What one container is started with: the requirement's ``config`` (host settings) and
``policy`` (limits), checked before anything is started.

``config`` keys: ``image`` (default :data:`~agently_core_docker.images.DEFAULT_IMAGE`; it
must be on the engine already, nothing is pulled), ``cpus`` (1.0), ``tmpfs_bytes`` (64 MiB,
the size cap of the writable work directory), ``workdir`` (``/work``), ``user``
(``65534:65534``, never root), ``mounts`` (host-configured bind mounts: ``[{"source",
"target", "read_only"}]``; the Docker socket is refused).

``policy`` keys (:class:`~agently_core.models.Policy` fields): ``network`` (only ``True``
gives the container a network), ``max_memory_bytes`` (256 MiB), ``max_processes`` (64).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agently_core.errors import AgentlyError

from .images import DEFAULT_IMAGE

DEFAULT_MEMORY = 256 * 1024 * 1024
DEFAULT_PROCESSES = 64
DEFAULT_CPUS = 1.0
DEFAULT_TMPFS = 64 * 1024 * 1024
DEFAULT_USER = "65534:65534"
CONFIG_KEYS = ("image", "cpus", "tmpfs_bytes", "workdir", "user", "mounts")
#: A Docker image reference: [registry/]name[:tag][@digest], lowercase name parts.
IMAGE_PATTERN = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?$")
_USER = re.compile(r"^[0-9]+(?::[0-9]+)?$")
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock")


class DockerConfigError(AgentlyError, ValueError):
    """The ``docker`` provider refused a configuration."""


@dataclass(frozen=True, slots=True)
class Mount:
    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True, slots=True)
class ContainerSettings:
    image: str
    network: bool
    memory_bytes: int
    processes: int
    cpus: float
    tmpfs_bytes: int
    workdir: str
    user: str
    mounts: tuple[Mount, ...]


def check_image(image: Any) -> str:
    """``image`` if it is a well-formed image reference, else a clear error."""
    if not isinstance(image, str) or len(image) > 255 or not IMAGE_PATTERN.match(image):
        raise DockerConfigError(f"not a Docker image name: {image!r}")
    return image


def _number(name: str, value: Any, kind: type) -> Any:
    numeric = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric) or not value > 0:
        raise DockerConfigError(f"docker {name} must be a positive "
                                f"{'number' if kind is float else 'integer'}, got {value!r}")
    return kind(value)


def _mounts(value: Any) -> tuple[Mount, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise DockerConfigError(f"docker mounts must be a list, got {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) - {"source", "target", "read_only"}:
            raise DockerConfigError(f"a docker mount is {{source, target, read_only}}, got {item!r}")
        source, target = item.get("source"), item.get("target")
        if not isinstance(source, str) or not os.path.isabs(source) or not os.path.exists(source):
            raise DockerConfigError(f"docker mount source must be an existing absolute path, "
                                    f"got {source!r}")
        if not isinstance(target, str) or not target.startswith("/") or target == "/":
            raise DockerConfigError(f"docker mount target must be an absolute path, got {target!r}")
        real = os.path.realpath(source)
        if any(real == s or real == os.path.realpath(s) for s in SOCKETS) or real.endswith(".sock"):
            raise DockerConfigError(f"docker mount {source!r}: a container never gets the "
                                    "Docker socket (or any socket)")
        read_only = item.get("read_only", True)
        if not isinstance(read_only, bool):
            raise DockerConfigError(f"docker mount read_only must be true or false, got {read_only!r}")
        out.append(Mount(source, target, read_only))
    return tuple(out)


def container_settings(config: Mapping[str, Any] | None,
                       policy: Mapping[str, Any] | None) -> ContainerSettings:
    """Check a requirement's ``config`` and ``policy``; nothing is started here."""
    if not isinstance(config, Mapping):
        raise DockerConfigError(f"docker config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise DockerConfigError(f"unknown docker config key(s) {', '.join(map(repr, unknown))}; "
                                f"known: {', '.join(CONFIG_KEYS)}")
    policy = dict(policy or {})
    network = policy.get("network")
    if network not in (None, True, False):
        raise DockerConfigError(f"policy network must be true or false, got {network!r}")
    user = config.get("user", DEFAULT_USER)
    if not isinstance(user, str) or not _USER.match(user) or user.split(":")[0] == "0":
        raise DockerConfigError(f"docker user must be a numeric non-root UID[:GID], got {user!r}")
    workdir = config.get("workdir", "/work")
    if not isinstance(workdir, str) or not workdir.startswith("/") or workdir == "/":
        raise DockerConfigError(f"docker workdir must be an absolute path, got {workdir!r}")
    memory = policy.get("max_memory_bytes")
    processes = policy.get("max_processes")
    return ContainerSettings(
        image=check_image(config.get("image", DEFAULT_IMAGE)),
        network=network is True,
        memory_bytes=DEFAULT_MEMORY if memory is None else _number("max_memory_bytes", memory, int),
        processes=DEFAULT_PROCESSES if processes is None else _number("max_processes", processes,
                                                                      int),
        cpus=_number("cpus", config.get("cpus", DEFAULT_CPUS), float),
        tmpfs_bytes=_number("tmpfs_bytes", config.get("tmpfs_bytes", DEFAULT_TMPFS), int),
        workdir=workdir, user=user, mounts=_mounts(config.get("mounts")))


def create_options(s: ContainerSettings, labels: Mapping[str, str]) -> dict[str, Any]:
    """docker-py ``containers.create`` keyword arguments for a hardened container."""
    uid, _, gid = s.user.partition(":")
    gid = gid or uid
    options: dict[str, Any] = {
        "command": ["sleep", "2147483647"],
        "detach": True,
        "labels": dict(labels),
        "network_mode": "bridge" if s.network else "none",
        "read_only": True,
        "tmpfs": {s.workdir: f"rw,nosuid,nodev,size={s.tmpfs_bytes},uid={uid},gid={gid},mode=0700"},
        "working_dir": s.workdir,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "user": s.user,
        "pids_limit": s.processes,
        "mem_limit": s.memory_bytes,
        "memswap_limit": s.memory_bytes,
        "nano_cpus": int(s.cpus * 1e9),
        "privileged": False,
        "init": True,  # docker's init as PID 1 reaps orphans (they would hold the pids limit)
        "ipc_mode": "private",
        "environment": {},
        "stdin_open": False,
        "tty": False,
    }
    if s.mounts:
        options["volumes"] = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                              for m in s.mounts}
    return options


#: The writable directories Podman adds to a read-only root, and the cap they get here.
PODMAN_TMPFS = ("/run", "/tmp", "/var/tmp")
PODMAN_TMPFS_BYTES = 1 << 20


def for_podman(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as Podman's Docker-compatible API takes them. It refuses the ``uid=`` and
    ``gid=`` options of a tmpfs (and ignores ``mode=``): its own ``U`` option gives the tmpfs
    directories to the container's user instead, the size cap unchanged. It adds writable,
    unbounded ``/run``, ``/tmp`` and ``/var/tmp`` to a read-only root: they get a small cap
    here. Its default open-file and process rlimits may lie above the host's hard limits
    (then no container starts): both are set explicitly, within the container's own."""
    import docker.types

    made = dict(options)
    tmpfs = {}
    for target, value in (options.get("tmpfs") or {}).items():
        kept = [part for part in value.split(",")
                if not part.startswith(("uid=", "gid=", "mode="))]
        tmpfs[target] = ",".join([*kept, "U"])
    if options.get("read_only"):  # Podman adds writable /run, /tmp, /var/tmp to a read-only
        for target in PODMAN_TMPFS:  # root, unbounded: these bound them (or take their place)
            tmpfs.setdefault(target, f"rw,nosuid,nodev,noexec,size={PODMAN_TMPFS_BYTES},U")
    if tmpfs:
        made["tmpfs"] = tmpfs
    ulimits = list(options.get("ulimits") or [])
    named = {limit["Name"] for limit in ulimits}
    if "nofile" not in named:
        ulimits.append(docker.types.Ulimit(name="nofile", soft=1024, hard=1024))
    if "nproc" not in named:
        tasks = options.get("pids_limit") or DEFAULT_PROCESSES
        ulimits.append(docker.types.Ulimit(name="nproc", soft=tasks, hard=tasks))
    made["ulimits"] = ulimits
    return made


__all__ = ["ContainerSettings", "DockerConfigError", "Mount", "check_image", "container_settings",
           "create_options", "for_podman"]
