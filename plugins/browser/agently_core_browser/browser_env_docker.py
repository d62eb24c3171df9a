"""BrowserDockerEnv (``browser_docker``): BrowserEnv's service in a container.

The same ``@playwright/mcp`` server and Chromium as :class:`~.browser_env.BrowserEnv`, run
with a container engine's command line (``docker run -i`` or ``podman run -i``; stdio is
the MCP channel) from a local browser image, so each env gets a clean, disposable system.
The container has no network (``--network none``), a read-only root, no capabilities, no
new privileges, an unprivileged user (65534), bounded processes, memory and ``/tmp``, and
none of the host's environment; its only way out is the egress relay's UNIX socket in the
env's workspace, bound at ``/work``, exactly as in the sandbox.

The image (:data:`BROWSER_IMAGE`) is built locally, nothing is pulled: ``mmdebstrap``
makes a Debian root with ``chromium`` and fonts from the machine's mirror, the host's Node.js
binary (the npm package wants Node 20; Debian 12 ships 18) and the installed npm package
are copied in, and the engine imports it (:func:`build_browser_image`, about three minutes;
an env builds it when the engine lacks it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from agently_core.errors import ConfigError

from .browser_env import CHROMIUM, NODE, BrowserEnv, _modules

__all__ = ["BROWSER_IMAGE", "BrowserDockerEnv", "build_browser_image", "container_engine"]

BROWSER_IMAGE = "agently-core/browser:bookworm"
BROWSER_PACKAGES = ("chromium", "fonts-dejavu-core")
#: Where the image keeps the server, its Node.js and the launcher.
IMAGE_ROOT = "/opt/agently"
CONTAINER_USER = 65534
ENGINES = ("docker", "podman")
LABEL = "agently-core.browser-env"


def container_engine(preferred: str | None = None) -> str:
    """The container command line to use: ``preferred`` (``docker`` or ``podman``), else
    ``docker`` when its engine answers, else ``podman`` (daemonless). A ConfigError when
    none can run a container."""
    if preferred is not None and preferred not in ENGINES:
        raise ConfigError(f"browser_docker: engine must be one of {', '.join(ENGINES)}, "
                          f"got {preferred!r}")
    for name in (preferred,) if preferred else ENGINES:
        path = shutil.which(name)
        if path is None:
            continue
        if name == "podman":
            return path
        try:
            done = subprocess.run([path, "version", "--format", "{{.Server.Version}}"],
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return path
    wanted = preferred or "docker (with a running engine) or podman"
    raise ConfigError(f"browser_docker needs {wanted} to run its container; none is usable "
                      "here (apt-get install podman, or start a Docker engine)")


def _image_name(engine: str, tag: str) -> str:
    """Podman keeps imported images under ``localhost/``."""
    if os.path.basename(engine) == "podman" and tag.count("/") == 1:
        return f"localhost/{tag}"
    return tag


def image_present(engine: str, tag: str = BROWSER_IMAGE) -> bool:
    done = subprocess.run([engine, "image", "inspect", _image_name(engine, tag)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode == 0


def build_browser_image(engine: str, server: str, *, tag: str = BROWSER_IMAGE,
                        node: str = NODE, suite: str = "bookworm") -> str:
    """Build ``tag`` for ``engine`` from Debian packages, the host's ``node`` and the npm
    tree of ``server`` (``.../node_modules/@playwright/mcp/cli.js``); returns the image name
    to run. Raises ConfigError when a step fails."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ConfigError("browser_docker: mmdebstrap is not installed (apt-get install "
                          "mmdebstrap; ./dev installs it); it builds the browser image")
    modules = _modules(server)
    launcher = Path(__file__).with_name("browser_env_launcher.cjs")
    with tempfile.TemporaryDirectory(prefix="agently-browser-image-") as tmp:
        staging = Path(tmp) / "agently"
        (staging / "bin").mkdir(parents=True)
        shutil.copy2(os.path.realpath(node), staging / "bin" / "node")
        shutil.copy2(launcher, staging / "launcher.cjs")
        target = Path(tmp) / "root.tar"
        command = [mmdebstrap, "--variant=minbase", f"--include={','.join(BROWSER_PACKAGES)}",
                   "--dpkgopt=path-exclude=/usr/share/doc/*",
                   "--dpkgopt=path-exclude=/usr/share/man/*",
                   "--dpkgopt=path-exclude=/usr/share/locale/*",
                   f"--customize-hook=mkdir -p \"$1{IMAGE_ROOT}\"",
                   f"--customize-hook=copy-in {staging}/bin {staging}/launcher.cjs {IMAGE_ROOT}",
                   f"--customize-hook=copy-in {modules} {IMAGE_ROOT}",
                   suite, str(target)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"browser_docker: mmdebstrap failed ({done.returncode}): "
                              f"{done.stderr.strip()[-1500:]}")
        name = _image_name(engine, tag)
        done = subprocess.run([engine, "import", "--change", 'CMD ["/bin/sh"]', str(target),
                               name], capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"browser_docker: {os.path.basename(engine)} import failed: "
                              f"{done.stderr.strip()[-1500:]}")
    return name


class BrowserDockerEnv(BrowserEnv):
    """:class:`~.browser_env.BrowserEnv` with its server in a container (see the module).

    Options: those of BrowserEnv (``isolation`` aside: the container is the isolation), and
    ``engine`` (``docker`` or ``podman``; default: docker when its engine answers, else
    podman), ``image`` (:data:`BROWSER_IMAGE`), ``build_image`` (build the image when the
    engine lacks it, default True), ``memory_mb`` (2048), ``processes`` (4096).
    """

    name = "browser_docker"

    def __init__(self, *, engine: str | None = None, image: str = BROWSER_IMAGE,
                 build_image: bool = True, memory_mb: int = 2048, processes: int = 4096,
                 **options: Any) -> None:
        if "isolation" in options:
            raise TypeError("browser_docker runs in a container; it takes no isolation option")
        super().__init__(isolation="none", **options)
        self.isolation = "container"
        if engine is not None and engine not in ENGINES:
            raise ConfigError(f"browser_docker: engine must be one of {', '.join(ENGINES)}, "
                              f"got {engine!r}")
        for label, value in (("memory_mb", memory_mb), ("processes", processes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 64:
                raise ConfigError(f"browser_docker: {label} must be an integer of at least 64, "
                                  f"got {value!r}")
        if not isinstance(image, str) or not image:
            raise ConfigError(f"browser_docker: image must be an image name, got {image!r}")
        self.engine = engine
        self.image = image
        self.build_image = bool(build_image)
        self.memory_mb = memory_mb
        self.processes = processes
        #: The container's name while built.
        self.container: str | None = None
        self._engine_path: str | None = None
        self._image_name = ""

    async def _before_start(self) -> None:
        import asyncio

        engine = await asyncio.to_thread(container_engine, self.engine)
        self._engine_path = engine
        server = self.server or ""
        if not await asyncio.to_thread(image_present, engine, self.image):
            if not self.build_image:
                raise ConfigError(f"browser_docker: the engine has no image {self.image!r} "
                                  "(build_image=False)")
            from .browser_env import find_server

            await asyncio.to_thread(build_browser_image, engine,
                                    os.path.realpath(server or find_server() or ""),
                                    tag=self.image, node=self.node)
        self._image_name = _image_name(engine, self.image)
        self.uid = CONTAINER_USER  # the workspace is the container user's

    def _inside(self, work: Path, server: str) -> tuple[Path, str, str, str]:
        return (Path("/work"), f"{IMAGE_ROOT}/bin/node",
                f"{IMAGE_ROOT}/node_modules/@playwright/mcp/cli.js", CHROMIUM)

    def _command(self, argv: list[str], work: Path,
                 server: str) -> tuple[list[str], dict[str, str], str | None]:
        import secrets

        engine = self._engine_path
        assert engine is not None
        podman = os.path.basename(engine) == "podman"
        self.container = f"agently-browser-{secrets.token_hex(6)}"
        tmp_mb = max(64, self.workspace_mb)
        command = [engine, "run", "--rm", "-i", "--name", self.container, "--label", f"{LABEL}=1",
                   "--network", "none", "--read-only", "--cap-drop", "ALL",
                   "--security-opt", "no-new-privileges",
                   "--user", f"{CONTAINER_USER}:{CONTAINER_USER}",
                   "--pids-limit", str(self.processes), "--memory", f"{self.memory_mb}m",
                   "--ulimit", "nofile=8192:8192",
                   "--tmpfs", f"/tmp:rw,nosuid,nodev,size={tmp_mb}m",
                   "-v", f"{work}:/work", "-w", "/work",
                   "-e", "HOME=/work", "-e", "XDG_CACHE_HOME=/tmp/.cache"]
        if podman:
            # Podman's defaults may lie above the host's hard limits, and it would add
            # unbounded writable /run and /var/tmp to the read-only root
            command += ["--ulimit", f"nproc={self.processes}:{self.processes}",
                        "--read-only-tmpfs=false"]
        command += [self._image_name, *argv]
        env = {k: v for k, v in os.environ.items() if k in ("DOCKER_HOST", "DOCKER_CONFIG",
                                                             "CONTAINER_HOST")}
        return command, env, None

    def _after_stop(self) -> None:
        name, self.container = self.container, None
        if name and self._engine_path:
            # a backstop: the container ends with its stdin and removes itself (--rm)
            podman = os.path.basename(self._engine_path) == "podman"
            subprocess.run([self._engine_path, "rm", "-f", *(["--time", "0"] if podman else []),
                            name], capture_output=True, text=True, timeout=60)
