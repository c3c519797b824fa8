"""Turn a container spec from a manifest into a command that runs on this machine.

The images copy a case folder to /app/<case> and run `python -m <case>.<module>` from
WORKDIR /app, so /app maps to the repository root. Other container paths (volume mounts,
/tmp/..., Katib's metrics file) map to folders under the run's own work dir, so replicas of
one job share them as they would share a volume.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = "/app"
PYTHONS = {"python", "python3", "python3.11", "/usr/local/bin/python", "/usr/bin/python3"}


@dataclass
class PathMap:
    """Container path prefixes and the host folders they stand for (longest prefix wins)."""

    workdir: Path
    prefixes: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefixes.setdefault(APP_DIR, REPO_ROOT)

    def add(self, container_path: str, host_path: Path | None = None) -> Path:
        """Map container_path to host_path (default: a folder under workdir named after it)."""
        container_path = container_path.rstrip("/") or "/"
        if host_path is None:
            host_path = self.workdir / "fs" / container_path.strip("/")
        self.prefixes[container_path] = host_path
        return host_path

    def host(self, container_path: str) -> Path:
        """The host path for an absolute container path (unmapped ones go under workdir/fs)."""
        for prefix in sorted(self.prefixes, key=len, reverse=True):
            if container_path == prefix or container_path.startswith(prefix + "/"):
                rest = container_path[len(prefix) :].lstrip("/")
                return self.prefixes[prefix] / rest if rest else self.prefixes[prefix]
        return self.workdir / "fs" / container_path.lstrip("/")

    def rewrite(self, value: str) -> str:
        """Rewrite container paths inside one argument: `/app/x`, `--out=/mnt/m`, `a:/tmp/b`."""
        for sep in ("=", ":", ","):
            if sep in value and not value.startswith("/"):
                head, _, tail = value.partition(sep)
                return head + sep + self.rewrite(tail)
        if value.startswith("/") and not value.startswith("//"):
            for prefix in sorted(self.prefixes, key=len, reverse=True):
                if value == prefix or value.startswith(prefix + "/"):
                    return str(self.host(value))
            first = "/" + value.strip("/").split("/", 1)[0]
            if first in (
                "/tmp",
                "/mnt",
                "/data",
                "/models",
                "/var",
                "/output",
                "/opt",
                "/workspace",
            ):
                host = self.host(value)
                host.parent.mkdir(parents=True, exist_ok=True)
                return str(host)
        return value


def local_argv(container: Mapping, paths: PathMap) -> list[str]:
    """command + args of a container, with the interpreter and paths mapped to this machine."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if not argv:
        raise ValueError(
            f"container {container.get('name', '?')!r} has no command or args: the harness cannot "
            "know the image's entrypoint, so name the command in the manifest"
        )
    argv = [paths.rewrite(str(a)) for a in argv]
    head = argv[0]
    if head in PYTHONS:
        argv[0] = sys.executable
    elif "/" not in head:
        # Console scripts (torchrun, spark-submit) come from the environment running the harness.
        found = shutil.which(
            head, path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
        )
        if found is None:
            raise FileNotFoundError(
                f"command {head!r} of container {container.get('name', '?')!r} is not installed here"
            )
        argv[0] = found
    return argv


def local_env(
    container: Mapping,
    paths: PathMap,
    extra: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The process environment: this one, the container's env (paths mapped), then extra.

    The repository root goes on PYTHONPATH so `python -m <case>.<module>` imports from any cwd,
    as WORKDIR /app does in the image, and this interpreter's folder goes first on PATH, so a
    `python` that a container's shell command runs is the one with the case's packages.
    `fields` gives the pod's downward-API values by fieldPath (`metadata.name`, ...); env from
    Secrets or unknown fieldRefs has no value here and is left out: a case that needs one reads
    it with a default.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join(
        p for p in (str(Path(sys.executable).parent), env.get("PATH")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    for item in container.get("env", []) or []:
        field_ref = (item.get("valueFrom") or {}).get("fieldRef") or {}
        if "value" in item:
            env[item["name"]] = paths.rewrite(str(item["value"]))
        elif fields and field_ref.get("fieldPath") in fields:
            env[item["name"]] = fields[field_ref["fieldPath"]]
    if extra:
        env.update(extra)
    return env


def local_cwd(container: Mapping, paths: PathMap) -> Path:
    """workingDir mapped to the host; the images' WORKDIR /app when the container names none."""
    return paths.host(container.get("workingDir") or APP_DIR)


def mount_volumes(pod_spec: Mapping, container: Mapping, paths: PathMap) -> None:
    """Give every volumeMount of the container a host folder shared by the whole run."""
    for mount in container.get("volumeMounts", []) or []:
        host = paths.workdir / "volumes" / mount["name"]
        if mount.get("subPath"):
            host = host / mount["subPath"]
        host.mkdir(parents=True, exist_ok=True)
        paths.add(mount["mountPath"], host)
