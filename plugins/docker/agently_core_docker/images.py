"""Images without a registry: root filesystems built locally and loaded with ``docker
import``, cached by tag (built once per engine).

* :func:`build_default_image` builds :data:`DEFAULT_IMAGE` (Debian bookworm, minbase, with
  python3 and nodejs) with ``mmdebstrap`` from the machine's Debian mirror.
* :func:`build_busybox_image` packs the host's static busybox (Debian ``busybox-static``) into
  a tiny image: enough for tests that need a shell and coreutils only.

Nothing here pulls from a registry.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agently_core.errors import AgentlyError

from .engine import LABEL, client

DEFAULT_IMAGE = "agently-core/default:bookworm"
DEFAULT_PACKAGES = ("python3", "nodejs")
BUSYBOX_IMAGE = "agently-core/busybox:test"
#: The busybox applets the tiny image links (``/bin/NAME -> busybox``).
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "sleep", "id", "touch", "mkdir", "rm", "wget",
                   "nc", "head", "yes", "true", "false", "ps", "mount", "env", "dd", "seq")


class ImageBuildError(AgentlyError):
    """An image could not be built or imported."""


def image_exists(tag: str, engine: Any = None) -> bool:
    """Does the engine hold ``tag``?"""
    import docker.errors

    engine = engine or client()
    try:
        engine.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def import_rootfs(tar: bytes | Path, tag: str, engine: Any = None,
                  command: Sequence[str] = ("/bin/sh",)) -> str:
    """``docker import`` a root-filesystem tarball as ``tag``; returns the image id."""
    engine = engine or client()
    data = tar.read_bytes() if isinstance(tar, Path) else tar
    changes = [f'CMD {list(command)!r}'.replace("'", '"'), f"LABEL {LABEL}=1"]
    try:
        repository, _, version = tag.rpartition(":") if ":" in tag else (tag, "", "latest")
        answer = engine.api.import_image_from_data(data, repository=repository, tag=version,
                                                   changes=changes)
    except Exception as exc:
        raise ImageBuildError(f"docker import of {tag!r} failed: {exc}") from None
    try:
        return engine.images.get(tag).id
    except Exception:
        raise ImageBuildError(f"docker import of {tag!r} gave no image: {answer!r}") from None


def busybox_rootfs(busybox: str | None = None) -> bytes:
    """A tarball of a minimal root: ``/bin/busybox`` and its applets, ``/tmp``, ``/work``."""
    path = busybox or shutil.which("busybox")
    if path is None:
        raise ImageBuildError("busybox is not installed (apt-get install busybox-static)")
    found = subprocess.run(["file", "-L", path], capture_output=True, text=True).stdout \
        if shutil.which("file") else "statically linked"
    if "statically linked" not in found and "static-pie" not in found:
        raise ImageBuildError(f"{path} is not statically linked (apt-get install busybox-static)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "tmp", "work", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(os.path.realpath(path), arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


def build_busybox_image(tag: str = BUSYBOX_IMAGE, *, rebuild: bool = False) -> str:
    """The tiny busybox image, imported unless the engine already holds ``tag``."""
    engine = client()
    if not rebuild and image_exists(tag, engine):
        return tag
    import_rootfs(busybox_rootfs(), tag, engine)
    return tag


def build_default_image(tag: str = DEFAULT_IMAGE, *, packages: Sequence[str] = DEFAULT_PACKAGES,
                        suite: str = "bookworm", rebuild: bool = False,
                        log: Any = None) -> str:
    """Build ``tag`` with ``mmdebstrap --variant=minbase --include=PACKAGES SUITE`` and
    ``docker import``, unless the engine already holds it (``rebuild=True`` builds anyway).
    Returns the tag."""
    engine = client()
    if not rebuild and image_exists(tag, engine):
        return tag
    if not packages or not all(isinstance(p, str) and p and p[0].isalnum() for p in packages):
        raise ImageBuildError(f"packages must be Debian package names, got {packages!r}")
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildError("mmdebstrap is not installed (apt-get install mmdebstrap; ./dev "
                              "installs it)")
    with tempfile.TemporaryDirectory(prefix="agently-image-") as tmp:
        target = Path(tmp) / "root.tar"
        command = [mmdebstrap, "--variant=minbase", f"--include={','.join(packages)}",
                   "--dpkgopt=path-exclude=/usr/share/doc/*",
                   "--dpkgopt=path-exclude=/usr/share/man/*",
                   "--dpkgopt=path-exclude=/usr/share/locale/*", suite, str(target)]
        if log is not None:
            log(" ".join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ImageBuildError(f"mmdebstrap failed ({done.returncode}): "
                                  f"{done.stderr.strip()[-2000:]}")
        import_rootfs(target, tag, engine, command=("/bin/sh",))
    return tag


__all__ = ["BUSYBOX_IMAGE", "DEFAULT_IMAGE", "DEFAULT_PACKAGES", "ImageBuildError",
           "build_busybox_image", "build_default_image", "busybox_rootfs", "image_exists",
           "import_rootfs"]
