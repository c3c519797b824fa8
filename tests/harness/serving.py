"""Start the model server an InferenceService describes, on this machine, and talk to it.

The predictor's first container (a custom-container predictor: `command` + `args`, as every case
study's manifest has) runs as a local process on a free 127.0.0.1 port. The harness appends
`--host 127.0.0.1 --http_port <port>` to its arguments, the `serve.py` convention (mnist/serve.py
and tests/fixtures/serving/echo_model.py). `/mnt/models`, where KServe's storage initializer puts
the model, maps to a folder the caller names.

    with serve(manifest_path, workdir=tmp_path, model_dir=trained_dir) as server:
        assert server.v1_predict([[1, 2, 3, 4]]).json()["predictions"] == [10.0]
        badrequests.check(server, probe, good_v1, good_v2)  # the shared bad-request suite

The process is stopped by its own process group id when the block ends, also when it raises;
an `atexit` hook stops any server a crashed caller left behind.
"""

from __future__ import annotations

import atexit
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from tests.harness import procs
from tests.harness.containers import PathMap, local_argv, local_cwd, local_env

MODEL_MOUNT = "/mnt/models"
LOG_TAIL_LINES = 60

# Servers started and not yet stopped: the atexit hook's list, in case a `with` never exits.
_RUNNING: dict[int, subprocess.Popen] = {}


class ServerStartError(RuntimeError):
    """The model server exited or never became ready; the message carries its log tail."""


@dataclass
class Server:
    """A running model server and a small HTTP client for it."""

    url: str
    port: int
    pid: int
    model_name: str
    log_path: Path
    _client: httpx.Client = field(repr=False, compare=False)

    def v1_predict(self, instances: list, **extra: object) -> httpx.Response:
        """POST /v1/models/<name>:predict with {"instances": instances, **extra}."""
        return self.post(f"/v1/models/{self.model_name}:predict", {"instances": instances, **extra})

    def v2_infer(self, inputs: list[dict], **extra: object) -> httpx.Response:
        """POST /v2/models/<name>/infer with {"inputs": inputs, **extra} (Open Inference V2)."""
        return self.post(f"/v2/models/{self.model_name}/infer", {"inputs": inputs, **extra})

    def post(
        self, path: str, body: bytes | str | dict, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST anything, for bad-request tests; str and bytes go as sent, labelled JSON."""
        if isinstance(body, dict):
            return self._client.post(path, json=body, headers=headers)
        # Labelled JSON as a real client would, so the server must actually parse it.
        sent = {"content-type": "application/json", **(headers or {})}
        return self._client.post(path, content=body, headers=sent)

    def get(self, path: str) -> httpx.Response:
        return self._client.get(path)

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def load_inference_service(manifest: Mapping | Path) -> dict:
    """The InferenceService from a dict or a YAML file (the first of its kind in the file)."""
    if isinstance(manifest, Mapping):
        return dict(manifest)
    for doc in yaml.safe_load_all(Path(manifest).read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "InferenceService":
            return doc
    raise ValueError(f"{manifest} holds no InferenceService")


def predictor_container(isvc: Mapping) -> dict:
    containers = (isvc.get("spec", {}).get("predictor", {}) or {}).get("containers") or []
    if not containers:
        raise ValueError(
            f"InferenceService {isvc.get('metadata', {}).get('name')!r} has no "
            "spec.predictor.containers: the harness runs custom-container predictors only"
        )
    return containers[0]


def model_name_of(isvc: Mapping, argv: Sequence[str]) -> str:
    """The last --model_name in argv (argparse keeps the last), else metadata.name."""
    name = None
    for i, arg in enumerate(argv):
        if arg == "--model_name" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--model_name="):
            name = arg.split("=", 1)[1]
    return name or isvc["metadata"]["name"]


@contextmanager
def serve(
    manifest: Mapping | Path,
    *,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    extra_args: Sequence[str] = (),
    paths: PathMap | None = None,
    model_dir: Path | None = None,
) -> Iterator[Server]:
    """Run the manifest's predictor on 127.0.0.1 until the block ends, then stop it.

    model_dir is the local folder that stands for /mnt/models (default: a folder under
    workdir); paths maps any other container path. Raises ServerStartError, with the log tail,
    when the server exits or is not ready within `timeout` seconds.
    """
    isvc = load_inference_service(manifest)
    container = predictor_container(isvc)
    paths = paths or PathMap(Path(workdir))
    if model_dir is not None:
        paths.add(MODEL_MOUNT, Path(model_dir))
    port = procs.free_port()
    # Appended last so they win over the manifest's --http_port (argparse keeps the last).
    argv = [
        *local_argv(container, paths),
        *extra_args,
        "--host",
        procs.LOOPBACK,
        "--http_port",
        str(port),
    ]
    name = model_name_of(isvc, argv)
    log_path = Path(workdir) / f"serve-{name}-{port}.log"
    proc = procs.start(
        argv,
        log_path=log_path,
        env=local_env(container, paths, env),
        cwd=local_cwd(container, paths),
    )
    _RUNNING[proc.pid] = proc
    url = f"http://{procs.LOOPBACK}:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            server = Server(url, port, proc.pid, name, log_path, client)
            _wait_ready(server, proc, argv, timeout)
            yield server
    finally:
        procs.stop(proc)
        _RUNNING.pop(proc.pid, None)


def _wait_ready(
    server: Server, proc: subprocess.Popen, argv: Sequence[str], timeout: float
) -> None:
    """Poll the V2 health endpoints until the server and its model are ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _fail(server, argv, f"exited with code {proc.returncode} before it was ready")
        try:
            if server.get("/v2/health/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    else:
        _fail(server, argv, f"was not ready after {timeout:.0f} s")
    ready = server.get(f"/v2/models/{server.model_name}/ready")
    if ready.status_code != 200:
        _fail(
            server,
            argv,
            f"is up but model {server.model_name!r} is not ready ({ready.status_code} "
            f"{ready.text.strip()}); does the manifest's --model_name match metadata.name?",
        )


def _fail(server: Server, argv: Sequence[str], what: str) -> None:
    tail = "\n".join(server.log().splitlines()[-LOG_TAIL_LINES:])
    raise ServerStartError(
        f"model server {what}\n  command: {' '.join(argv)}\n  log: {server.log_path}\n"
        f"--- last lines of its log ---\n{tail}"
    )


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_RUNNING.values()):
        procs.stop(proc, grace=2.0)
