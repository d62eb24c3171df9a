"""Docker: ``run_python``, ``run_nodejs`` and ``run_bash`` served by the ``docker`` provider
beside the Docker CLI.

    python bench/docker_bench.py [--json] [--repeat N] [--kinds python,node,bash]

``docker_figures(repeat)`` returns rows shaped like bench/run.py's (``{"name", "value",
"unit", "baseline", "ratio"}``; ``baseline`` measured in the same run, ours and the
baseline's measurements alternating so that machine noise hits both alike; medians). For
each kind (``NAME`` is ``python``, ``nodejs`` or ``bash``; the code is ``x = 1 + 1``,
``var x = 1 + 1`` and ``echo hi``):

* ``docker_run_NAME_warm_ms``: the action through ``agent.action.async_execute_action`` on
  an agent configured with ``[providers] KIND = "docker"`` whose container is warm
  (dispatch, the health check, the call, the record), beside ``docker exec CONTAINER
  python3 -c CODE`` (``node -e``, ``bash -c``) through the Docker CLI in a warm container
  of the same image started with the same hardening;
* ``docker_run_NAME_cold_ms``: a new agent's first call (a new container created and
  started, the worker's ready handshake or the Bash sandbox's start probe, the call),
  beside ``docker run --rm`` of the same image and code with the same flags;
* ``docker_NAME_release_ms``: closing that agent (its container killed and removed;
  ``docker run --rm`` does its removal inside the baseline above);
* ``docker_NAME_container_memory_mb``: the warm container's memory as ``docker stats``
  counts it (the cgroup's usage minus inactive file pages), beside the same image running
  ``sleep`` with the same flags; ``docker_NAME_container_anon_mb``: the cgroup's resident
  anonymous memory; ``docker_NAME_worker_rss_mb``: the resident memory of the container's
  processes seen from the host (shared pages included, as bench/run.py's
  ``sandbox_rss_mb`` counts a native worker's); ``docker_NAME_shim_rss_mb``: the resident
  memory of the container's ``containerd-shim`` on the host, the engine's own cost per
  container.

The flags of the CLI baselines are read from our container itself (``docker inspect``:
network, read-only root, tmpfs and bind mounts, init, dropped capabilities, security
options, user, working directory, pids, memory, CPU and ulimits, environment, log driver),
and the baseline container is checked to have come out the same. No engine answering, no
``docker`` CLI or no image is an error: these figures are never skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any, NamedTuple

CODE = "x = 1 + 1"
JS_CODE = "var x = 1 + 1"
SH_CODE = "echo hi"
WARM_BLOCK = 40  # agent calls per block (about 2 ms each)
EXEC_BLOCK = 5  # docker exec calls per block (about 100 ms each)
BENCH_LABEL = "agently-core.bench"
#: HostConfig fields that make up the hardening, compared between ours and the baseline's.
HARDENING = ("NetworkMode", "ReadonlyRootfs", "Tmpfs", "CapDrop", "SecurityOpt", "PidsLimit",
             "Memory", "MemorySwap", "NanoCpus", "IpcMode", "Ulimits", "Privileged")
MiB = 1 << 20


def _row(name: str, value: float, unit: str, baseline: float | None) -> dict[str, Any]:
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None}


def _engine() -> tuple[Any, str]:
    """A docker-py client and the path of the ``docker`` CLI, or a RuntimeError saying what
    is missing."""
    from agently_core_docker.engine import DockerUnavailable, client, where

    cli = shutil.which("docker")
    if cli is None:
        raise RuntimeError("docker_bench: the docker CLI is not on PATH (apt-get install "
                           "docker.io); its baselines cannot be measured")
    try:
        engine = client()
    except DockerUnavailable as exc:
        raise RuntimeError(f"docker_bench: {exc}") from None
    answered = subprocess.run([cli, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, text=True)
    if answered.returncode != 0:
        engine.close()
        raise RuntimeError(f"docker_bench: the docker CLI reaches no engine at {where()}: "
                           f"{answered.stderr.strip()}")
    return engine, cli


def _image(engine: Any) -> str:
    import docker.errors
    from agently_core_docker.workers import worker_image

    image = worker_image()
    try:
        engine.images.get(image)
    except docker.errors.ImageNotFound:
        raise RuntimeError(f"docker_bench: image {image!r} is not on the engine: run "
                           "agently-core docker build-image") from None
    return image


def hardening_flags(attrs: dict[str, Any]) -> list[str]:
    """``docker run`` flags that recreate a container's hardening, from its inspect data."""
    host, config = attrs["HostConfig"], attrs["Config"]
    flags = ["--network", host["NetworkMode"], "--user", config["User"],
             "--ipc", host["IpcMode"]]
    if config.get("WorkingDir"):
        flags += ["--workdir", config["WorkingDir"]]
    if host["ReadonlyRootfs"]:
        flags.append("--read-only")
    if host.get("Init"):
        flags.append("--init")
    for bind in host.get("Binds") or ():
        flags += ["--volume", bind]
    for path, options in (host.get("Tmpfs") or {}).items():
        flags += ["--tmpfs", f"{path}:{options}"]
    for cap in host.get("CapDrop") or ():
        flags += ["--cap-drop", cap]
    for option in host.get("SecurityOpt") or ():
        flags += ["--security-opt", option]
    if host.get("PidsLimit"):
        flags += ["--pids-limit", str(host["PidsLimit"])]
    if host.get("Memory"):
        flags += ["--memory", f"{host['Memory']}b", "--memory-swap", f"{host['MemorySwap']}b"]
    if host.get("NanoCpus"):
        flags += ["--cpus", f"{host['NanoCpus'] / 1e9:g}"]
    for limit in host.get("Ulimits") or ():
        flags += ["--ulimit", f"{limit['Name']}={limit['Soft']}:{limit['Hard']}"]
    for variable in config.get("Env") or ():
        flags += ["--env", variable]
    log = (host.get("LogConfig") or {}).get("Type")
    if log:
        flags += ["--log-driver", log]
    return flags


def _hardening(attrs: dict[str, Any]) -> dict[str, Any]:
    host = attrs["HostConfig"]
    ulimits = sorted((u["Name"], u["Soft"], u["Hard"]) for u in host.get("Ulimits") or ())
    return {**{key: host.get(key) for key in HARDENING}, "Ulimits": ulimits,
            "LogDriver": (host.get("LogConfig") or {}).get("Type"),
            "Binds": sorted(host.get("Binds") or ()), "Init": bool(host.get("Init")),
            "User": attrs["Config"]["User"], "WorkingDir": attrs["Config"]["WorkingDir"]}


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"docker_bench: {' '.join(argv[:3])} ... failed "
                           f"({done.returncode}): {done.stderr.decode(errors='replace')[-400:]}")
    return elapsed


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def _memory(engine: Any, ident: str) -> dict[str, float]:
    """A container's memory (MiB): ``used`` as ``docker stats`` counts it (the cgroup's
    usage minus inactive file pages), ``anon`` the cgroup's resident anonymous memory,
    ``processes`` the resident memory of its processes seen from the host (shared library
    pages included, as bench/run.py's ``sandbox_rss_mb`` counts them) and ``shim`` that of
    its ``containerd-shim``."""
    stats = engine.api.stats(ident, stream=False)["memory_stats"]
    detail = stats.get("stats", {})
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    anon = detail.get("total_rss", detail.get("rss", detail.get("anon", 0)))
    top = engine.api.top(ident, ps_args="-o pid")
    pids = [int(row[0]) for row in top["Processes"]]
    main = engine.api.inspect_container(ident)["State"]["Pid"]
    return {"used": (stats["usage"] - inactive) / MiB, "anon": anon / MiB,
            "processes": sum(_rss_mb(pid) for pid in pids), "shim": _rss_mb(_parent(main))}


class Kind(NamedTuple):
    """One served kind: how an agent mounts it, its action and arguments, the same code as
    an argv for the CLI baselines, and how many calls of each a warm block makes."""

    kind: str
    action: str
    enable: str
    kwargs: dict[str, Any]
    argv: tuple[str, ...]
    block: int
    exec_block: int


KINDS = (
    Kind("python", "run_python", "enable_python", {"python_code": CODE},
         ("python3", "-c", CODE), WARM_BLOCK, EXEC_BLOCK),
    Kind("node", "run_nodejs", "enable_nodejs", {"js_code": JS_CODE},
         ("node", "-e", JS_CODE), WARM_BLOCK, EXEC_BLOCK),
    # every run_bash call is itself one docker exec: as many of ours as of the baseline's
    Kind("bash", "run_bash", "enable_shell", {"cmd": SH_CODE},
         ("bash", "-c", SH_CODE), EXEC_BLOCK, EXEC_BLOCK),
)


def _container_of(agent: Any, kind: str = "python") -> Any:
    handles = list(agent.manager.list(kind=kind))
    if len(handles) != 1 or handles[0].provider != "docker":
        raise RuntimeError(f"docker_bench: kind {kind!r} is not served by docker here: {handles}")
    container = agent.manager.resource(handles[0]).container
    if container is None or container.removed:
        raise RuntimeError(f"docker_bench: the warm {kind} sandbox has no live container")
    return container


def _agent(kind: Kind) -> Any:
    import agently_core

    agent = agently_core.create_agent(config={"providers": {kind.kind: "docker"}})
    getattr(agent, kind.enable)()
    return agent


async def _call(agent: Any, kind: Kind = KINDS[0]) -> None:
    record = await agent.action.async_execute_action(kind.action, dict(kind.kwargs))
    if record.status != "success" or (record.result or {}).get("exit_code", 0) != 0:
        raise RuntimeError(f"docker_bench: {kind.action} failed: {record.error or record.result}")


async def _kind_figures(kind: Kind, engine: Any, cli: str, image: str,
                        repeat: int) -> list[dict[str, Any]]:
    """The figures of one kind (see the module docstring)."""
    agent = _agent(kind)
    baseline = f"agently-bench-{uuid.uuid4().hex[:12]}"
    try:
        await _call(agent, kind)
        ours = engine.api.inspect_container(_container_of(agent, kind.kind).id)
        flags = [*hardening_flags(ours), "--label", f"{BENCH_LABEL}=1"]
        subprocess.run([cli, "run", "-d", "--name", baseline, *flags, image,
                        "sleep", "2147483647"], check=True, capture_output=True)
        theirs = engine.api.inspect_container(baseline)
        if _hardening(ours) != _hardening(theirs):
            raise RuntimeError(f"docker_bench: the baseline container's hardening differs: "
                               f"{_hardening(ours)} != {_hardening(theirs)}")
        exec_argv = [cli, "exec", baseline, *kind.argv]
        for _ in range(min(20, 4 * kind.block)):
            await _call(agent, kind)
        _timed(exec_argv)
        warm, bare = [], []
        for _ in range(repeat):
            for _ in range(kind.block):
                started = time.perf_counter()
                await _call(agent, kind)
                warm.append((time.perf_counter() - started) * 1000)
            bare.extend(_timed(exec_argv) for _ in range(kind.exec_block))
        memory = _memory(engine, ours["Id"])
        sleep_memory = _memory(engine, baseline)

        run_argv = [cli, "run", "--rm", *flags, image, *kind.argv]
        cold, release, fresh = [], [], []
        _timed(run_argv)
        for _ in range(max(5, repeat)):
            new = _agent(kind)
            try:
                started = time.perf_counter()
                await _call(new, kind)
                cold.append((time.perf_counter() - started) * 1000)
                _container_of(new, kind.kind)
            finally:
                started = time.perf_counter()
                await new.aclose()
                release.append((time.perf_counter() - started) * 1000)
            fresh.append(_timed(run_argv))
    finally:
        await agent.aclose()
        subprocess.run([cli, "rm", "-f", baseline], capture_output=True)
    median = statistics.median
    name = "nodejs" if kind.kind == "node" else kind.kind
    return [
        _row(f"docker_run_{name}_warm_ms", median(warm), "ms", median(bare)),
        _row(f"docker_run_{name}_cold_ms", median(cold), "ms", median(fresh)),
        _row(f"docker_{name}_release_ms", median(release), "ms", None),
        _row(f"docker_{name}_container_memory_mb", memory["used"], "MiB", sleep_memory["used"]),
        _row(f"docker_{name}_container_anon_mb", memory["anon"], "MiB", sleep_memory["anon"]),
        _row(f"docker_{name}_worker_rss_mb", memory["processes"], "MiB",
             sleep_memory["processes"]),
        _row(f"docker_{name}_shim_rss_mb", memory["shim"], "MiB", None),
    ]


async def docker_figures(repeat: int = 10, kinds: tuple[str, ...] = ("python", "node", "bash")
                         ) -> list[dict[str, Any]]:
    engine, cli = _engine()
    try:
        image = _image(engine)
        rows: list[dict[str, Any]] = []
        for kind in KINDS:
            if kind.kind in kinds:
                rows.extend(await _kind_figures(kind, engine, cli, image, repeat))
        return rows
    finally:
        engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--kinds", default="python,node,bash",
                        help="the served kinds to measure (comma-separated)")
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(kinds) - {k.kind for k in KINDS})
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; known: python, node, bash")
    try:
        rows = asyncio.run(docker_figures(args.repeat, kinds))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    for row in rows:
        print(json.dumps(row) if args.json else
              f"{row['name']:<36} {row['value']!s:>10} {row['unit']:<4} "
              f"baseline {row['baseline']!s:>8}  ratio {row['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
