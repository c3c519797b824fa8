"""The shared bad-request suite: malformed requests every model server must refuse with a 4xx.

A case's serving test hands it two good requests, one V1 and one V2 (JSON), and the suite makes
the rest from them: a body that is not JSON or not an object, missing or empty fields, wrong
types, zero-sized and negative dimensions, sizes that disagree with the shape, duplicate input
names, requested outputs that do not exist, the V2 binary-data extension with a broken header
length, sizes or framing and BYTES that are not UTF-8, numbers so large that the model overflows,
and bodies over the size limit, with and without Content-Length. Each probe must get

* a 4xx (the probe's own status where it names one; never a 5xx, never a dropped connection),
* the error shape every server here shares: a JSON object `{"error": "<message>"}` whose message
  contains the probe's words (what was wrong, what was expected),
* and afterwards the server still answers both good requests with a 200.

Probes of numbers the model may legitimately take (huge finite inputs) also pass with a 200
whose outputs are all finite: never a 200 carrying NaN or infinity (`null` in JSON).

    from tests.harness import badrequests

    PROBES = badrequests.probes(GOOD_V1, GOOD_V2, max_request_bytes=4 << 20)

    @pytest.mark.parametrize("probe", PROBES, ids=str)
    def test_shared_bad_requests(server, probe):
        badrequests.check(server, probe, GOOD_V1, GOOD_V2)

Each probe goes on a connection of its own; the good requests that follow reuse the harness's
keep-alive client, so a server that leaves a connection in a bad state fails there.
`binary_request` writes the binary-data extension form of a V2 JSON request, for clients and
benchmarks as much as for the probes.
"""

from __future__ import annotations

import copy
import json
import math
import socket
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import httpx
import numpy as np

HEADER = "inference-header-content-length"  # the binary-data extension's JSON length header
JSON = {"content-type": "application/json"}
OCTETS = "application/octet-stream"
# V2 datatypes and how the binary-data extension lays them out (little-endian, row-major).
NUMPY_TYPES = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
FP64_MAX = float(np.finfo(np.float64).max)
FP32_MAX = float(np.finfo(np.float32).max)
CHUNK = 1 << 20
HEADERS_ONLY_TIMEOUT = 10.0  # seconds to answer a body that was declared and never sent


@dataclass(frozen=True)
class Probe:
    """One request the server must refuse (or, for `finite_ok`, answer with finite outputs)."""

    name: str
    protocol: str  # "v1" or "v2": which endpoint it goes to
    body: bytes | None = None  # None: the body is `chunks` (sent without Content-Length)
    headers: Mapping[str, str] = field(default_factory=lambda: dict(JSON))
    status: int | None = 400  # the status it must get; None: any 4xx
    says: tuple[str, ...] = ()  # words the error message must contain (case-insensitive)
    finite_ok: bool = False  # a 200 with only finite outputs also passes
    chunks: Callable[[], Iterator[bytes]] | None = None
    headers_only: bool = False  # send the headers, then wait for the answer before any body
    method: str = "POST"
    path: str | None = None  # instead of the protocol's endpoint

    def __str__(self) -> str:
        return self.name


# --- building requests --------------------------------------------------------------------------


def dumps(body: object) -> bytes:
    return json.dumps(body).encode()


def binary_request(v2: Mapping, *, binary_output: bool = False) -> tuple[bytes, dict[str, str]]:
    """The binary-data extension form of a V2 JSON request: (body, headers).

    Every input moves after the JSON as raw little-endian values (BYTES elements each with a
    4-byte length), its `data` replaced by `parameters.binary_data_size`.
    """
    head = copy.deepcopy(dict(v2))
    raws = []
    for tensor in head["inputs"]:
        raw = tensor_bytes(tensor.pop("data"), tensor["datatype"])
        tensor["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(raw)}
        raws.append(raw)
    if binary_output:
        head["parameters"] = {**head.get("parameters", {}), "binary_data_output": True}
    text = dumps(head)
    return text + b"".join(raws), {HEADER: str(len(text)), "content-type": OCTETS}


def tensor_bytes(data: list, datatype: str) -> bytes:
    """V2 tensor data as the binary-data extension sends it."""
    if datatype == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in np.ravel(data)]
        return b"".join(struct.pack("<I", len(v)) + v for v in items)
    return np.ascontiguousarray(data, NUMPY_TYPES[datatype]).tobytes()


def with_numbers(value: object, number: float) -> object:
    """value with every number in it (not booleans) replaced by `number`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number
    if isinstance(value, list):
        return [with_numbers(v, number) for v in value]
    if isinstance(value, dict):
        return {k: with_numbers(v, number) for k, v in value.items()}
    return value


def size_of(shape: list[int]) -> int:
    return math.prod(shape)


# --- the probes -----------------------------------------------------------------------------------


def probes(good_v1: Mapping, good_v2: Mapping, *, max_request_bytes: int) -> list[Probe]:
    """Every generic bad request, made from a good V1 and a good (JSON) V2 request."""
    return [
        *v1_probes(good_v1),
        *v2_json_probes(good_v2),
        *v2_binary_probes(good_v2),
        *size_probes(max_request_bytes),
    ]


def v1_probes(good: Mapping) -> list[Probe]:
    def v1(name: str, body: object, *says: str, **kw) -> Probe:
        raw = body if isinstance(body, bytes) else dumps(body)
        return Probe(f"v1-{name}", "v1", raw, says=says, **kw)

    return [
        v1("not-json", b"this is not json", "Unrecognized request format"),
        v1("bad-utf8", b'{"instances": ["\xff"]}', "Unrecognized request format"),
        v1("not-an-object", [good["instances"]], "object"),
        v1("null", b"null", "object"),
        v1("text", b'"instances"', "object"),
        v1("missing-instances", {k: v for k, v in good.items() if k != "instances"}, "instances"),
        v1("instances-not-a-list", {**good, "instances": {"0": 1}}, "instances", "list"),
        v1("empty-batch", {**good, "instances": []}, "instances"),
        v1("null-instance", {**good, "instances": [None]}, "instances[0]"),
        v1("text-instance", {**good, "instances": ["text"]}, "instances[0]"),
        v1("bool-instance", {**good, "instances": [True]}, "instances[0]"),
        v1("object-instance", {**good, "instances": [{}]}, "instances[0]"),
        v1("nested-too-deep", {**good, "instances": [[[[[[0]]]]]]}, "instances[0]"),
        v1("huge-numbers", with_numbers(good, FP64_MAX), status=None, finite_ok=True),
        v1("huge-negative-numbers", with_numbers(good, -FP64_MAX), status=None, finite_ok=True),
        v1("fp32-max-numbers", with_numbers(good, FP32_MAX), status=None, finite_ok=True),
        Probe(
            "v1-csv-content-type",
            "v1",
            dumps(good),
            headers={"content-type": "text/csv"},
            says=("Content-Type: application/json",),
        ),
        Probe("v1-unknown-model", "v1", dumps(good), status=404, path="/v1/models/no-such:predict"),
    ]


def v2_json_probes(good: Mapping) -> list[Probe]:
    first = good["inputs"][0]
    name = first["name"]

    def v2(probe: str, body: object, *says: str, **kw) -> Probe:
        raw = body if isinstance(body, bytes) else dumps(body)
        return Probe(f"v2-{probe}", "v2", raw, says=says, **kw)

    def tensor(**changes: object) -> dict:
        """The good request with its first input changed (a None value drops the field)."""
        changed = {**first, **changes}
        return {**good, "inputs": [{k: v for k, v in changed.items() if v is not None}]}

    size = size_of(first["shape"])
    numeric = [t for t in good["inputs"] if t["datatype"] != "BYTES"]
    probes_ = [
        v2("not-json", b"this is not json", "not valid JSON"),
        v2("not-an-object", [good], "object"),
        v2("missing-inputs", {k: v for k, v in good.items() if k != "inputs"}, "inputs"),
        v2("inputs-not-a-list", {**good, "inputs": {"0": first}}, "inputs"),
        v2("no-inputs", {**good, "inputs": []}, "inputs"),
        v2("input-not-an-object", {**good, "inputs": [5]}, "inputs[0]"),
        v2("input-without-name", tensor(name=None), "name"),
        v2("input-without-shape", tensor(shape=None), "shape"),
        v2("input-without-datatype", tensor(datatype=None), "datatype"),
        v2("input-without-data", tensor(data=None), "data"),
        v2("name-not-text", tensor(name=5), "name"),
        v2("shape-not-a-list", tensor(shape="1"), "shape"),
        v2("shape-of-fractions", tensor(shape=[d + 0.5 for d in first["shape"]]), "shape"),
        v2("unknown-datatype", tensor(datatype="FP99"), "datatype", "FP99"),
        v2("data-not-a-list", tensor(data="0"), "data"),
        v2("data-of-nulls", tensor(data=[None] * size), repr(name)),
        v2("data-of-objects", tensor(data=[{}] * size), repr(name)),
        v2("data-one-short", tensor(data=np.ravel(first["data"])[:-1].tolist()), repr(name)),
        v2("data-one-long", tensor(data=[*np.ravel(first["data"]).tolist(), 0]), repr(name)),
        v2("duplicate-input", {**good, "inputs": [*good["inputs"], first]}, "duplicate", name),
        v2("unknown-output", {**good, "outputs": [{"name": "no_such_output"}]}, "no_such_output"),
        v2("outputs-not-a-list", {**good, "outputs": "all"}, "outputs"),
        v2("output-without-name", {**good, "outputs": [{}]}, "outputs[0]"),
        v2("parameters-not-an-object", {**good, "parameters": "x"}, "parameters"),
        v2("parameter-not-a-scalar", {**good, "parameters": {"x": [1]}}, "parameters.x"),
        v2("id-not-text", {**good, "id": 5}, "id"),
        Probe("v2-unknown-model", "v2", dumps(good), status=404, path="/v2/models/no-such/infer"),
        Probe("v2-get", "v2", None, status=405, method="GET"),
    ]
    # Zero-sized and negative dimensions, in every position.
    for axis in range(len(first["shape"])):
        for extent, label in ((0, "zero"), (-1, "negative")):
            shape = list(first["shape"])
            shape[axis] = extent
            data = [] if extent == 0 else first["data"]
            probes_.append(v2(f"{label}-dimension-{axis}", tensor(shape=shape, data=data), name))
    # Numbers so large that the model may overflow: refused, or answered with finite outputs.
    for label, number, datatype in (
        ("huge-fp64", FP64_MAX, "FP64"),
        ("huge-negative-fp64", -FP64_MAX, "FP64"),
        ("fp32-max", FP32_MAX, "FP32"),
    ):
        if numeric:
            inputs = [
                {**t, "datatype": datatype, "data": with_numbers(t["data"], number)}
                if t["datatype"] != "BYTES"
                else t
                for t in good["inputs"]
            ]
            probes_.append(v2(label, {**good, "inputs": inputs}, status=None, finite_ok=True))
    return probes_


def v2_binary_probes(good: Mapping) -> list[Probe]:
    first = good["inputs"][0]
    name = first["name"]
    body, headers = binary_request(good)
    json_length = int(headers[HEADER])

    def binary(probe: str, raw: bytes, *says: str, header: str | None = None, **kw) -> Probe:
        sent = {**headers, HEADER: str(json_length) if header is None else header}
        return Probe(f"binary-{probe}", "v2", raw, headers=sent, says=says, **kw)

    def rebuilt(inputs: list[dict], raws: list[bytes], **extra: object) -> tuple[bytes, str]:
        text = dumps({**good, "inputs": inputs, **extra})
        return text + b"".join(raws), str(len(text))

    head = json.loads(body[:json_length])
    raws, offset = [], json_length
    for tensor in head["inputs"]:
        size = tensor["parameters"]["binary_data_size"]
        raws.append(body[offset : offset + size])
        offset += size
    sizes = [t["parameters"]["binary_data_size"] for t in head["inputs"]]

    def resized(delta: int) -> tuple[bytes, str]:
        inputs = copy.deepcopy(head["inputs"])
        inputs[0]["parameters"]["binary_data_size"] = sizes[0] + delta
        first_raw = raws[0][: sizes[0] + delta] if delta < 0 else raws[0] + b"\0" * delta
        return rebuilt(inputs, [first_raw, *raws[1:]])

    def framed(datatype: str, shape: list[int], raw: bytes, size: object = None) -> tuple:
        inputs = copy.deepcopy(head["inputs"])
        inputs[0].update(datatype=datatype, shape=shape)
        inputs[0]["parameters"] = {"binary_data_size": len(raw) if size is None else size}
        return rebuilt(inputs, [raw, *raws[1:]])

    short, short_header = resized(-1)
    long_, long_header = resized(+1)
    text_ = b"\xff\xfe\xfd not UTF-8"
    non_utf8, non_utf8_header = framed("BYTES", [1], struct.pack("<I", len(text_)) + text_)
    overrun, overrun_header = framed("BYTES", [1], struct.pack("<I", 300) + b"abc")
    count, count_header = framed("BYTES", [2], struct.pack("<I", 3) + b"abc")
    size_text, size_text_header = framed(first["datatype"], first["shape"], raws[0], "all")
    size_negative, size_negative_header = framed(first["datatype"], first["shape"], b"", -1)
    both = copy.deepcopy(head["inputs"])
    both[0]["data"] = first["data"]
    both_body, both_header = rebuilt(both, raws)
    neither = copy.deepcopy(head["inputs"])
    del neither[0]["parameters"]
    neither_body, neither_header = rebuilt(neither, raws[1:])
    listed = dumps([head])
    return [
        binary("answers", body, status=200),  # the good request, binary: the control
        binary("header-not-a-number", body, "inference-header-content-length", header="abc"),
        binary("header-negative", body, "inference-header-content-length", header="-1"),
        binary("header-zero", body, "inference-header-content-length", header="0"),
        binary("header-past-the-end", body, "inference-header-content-length", header="999999999"),
        binary("header-cuts-the-json", body, "inference-header-content-length", header="5"),
        binary(
            "header-missing",
            body,
            "inference-header-content-length",
            header="",
        ),
        binary("json-not-an-object", listed, "object", header=str(len(listed))),
        binary("size-one-short", short, repr(name), header=short_header),
        binary("size-one-long", long_, repr(name), header=long_header),
        binary("truncated", body[:-3], "binary_data_size"),
        binary("trailing-bytes", body + b"\0\0\0\0", "binary_data_size"),
        binary("size-not-a-number", size_text, "binary_data_size", header=size_text_header),
        binary("size-negative", size_negative, "binary_data_size", header=size_negative_header),
        binary("data-and-size", both_body, "binary_data_size", header=both_header),
        binary("neither-data-nor-size", neither_body, "data", header=neither_header),
        binary("bytes-not-utf8", non_utf8, repr(name), header=non_utf8_header),
        binary("bytes-length-overrun", overrun, "BYTES", header=overrun_header),
        binary("bytes-count-mismatch", count, "BYTES", header=count_header),
    ]


def size_probes(max_request_bytes: int) -> list[Probe]:
    """A body one byte over the limit: with Content-Length, chunked, and declared but unsent."""
    over = max_request_bytes + 1

    def chunks() -> Iterator[bytes]:  # made as sent: a 64 MiB limit needs no 64 MiB in memory
        left = over
        while left > 0:
            yield b"0" * min(CHUNK, left)
            left -= CHUNK

    declared = {**JSON, "content-length": str(over)}
    says = ("over the limit", str(max_request_bytes))
    return [
        probe
        for protocol in ("v1", "v2")
        for probe in (
            Probe(f"{protocol}-over-the-limit", protocol, None, declared, 413, says, chunks=chunks),
            Probe(
                f"{protocol}-over-the-limit-chunked", protocol, None, JSON, 413, says, chunks=chunks
            ),
            Probe(
                f"{protocol}-over-the-limit-unsent",
                protocol,
                None,
                declared,
                413,
                says,
                headers_only=True,
            ),
        )
    ]


# --- sending and checking -------------------------------------------------------------------------


def endpoint(server, probe: Probe) -> str:
    if probe.path:
        return probe.path
    if probe.protocol == "v1":
        return f"/v1/models/{server.model_name}:predict"
    return f"/v2/models/{server.model_name}/infer"


def send(server, probe: Probe, timeout: float = 120.0) -> httpx.Response:
    """The probe on a connection of its own."""
    path = endpoint(server, probe)
    if probe.headers_only:
        return send_headers_only(server, path, probe, HEADERS_ONLY_TIMEOUT)
    headers = {k: v for k, v in probe.headers.items() if v != ""}
    content = probe.chunks() if probe.chunks else probe.body
    with httpx.Client(base_url=server.url, timeout=timeout) as client:
        if probe.method != "POST":
            return client.request(probe.method, path)
        return client.post(path, content=content, headers=headers)


def send_headers_only(server, path: str, probe: Probe, timeout: float) -> httpx.Response:
    """Headers that declare a body, and no body: as a client that waits before sending
    (Expect: 100-continue). The answer must come without the server waiting for the body."""
    lines = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in probe.headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=rest)


def problems(server, probe: Probe, good_v1: Mapping, good_v2: Mapping) -> list[str]:
    """What is wrong with the server's answer to the probe (empty: nothing)."""
    try:
        response = send(server, probe)
    except (httpx.HTTPError, OSError) as e:  # a dropped connection, a timeout
        return [f"no answer: {type(e).__name__}: {e}"]
    found = judge(probe, response)
    for protocol, good in (("v1", good_v1), ("v2", good_v2)):
        path = endpoint(server, Probe("good", protocol))
        try:
            answer = server.post(path, dict(good))
        except httpx.HTTPError as e:
            found.append(f"then a good {protocol} request got no answer: {e}")
            continue
        if answer.status_code != 200:
            found.append(f"then a good {protocol} request got {answer.status_code}: {answer.text}")
    return found


def judge(probe: Probe, response: httpx.Response) -> list[str]:
    """What is wrong with one answer: its status, then the shape and words of its error."""
    status, text = response.status_code, response.text[:500]
    if probe.status == 200:
        return [] if status == 200 else [f"expected 200, got {status}: {text}"]
    if status >= 500:
        return [f"a {status} (a server error) for a bad request: {text}"]
    if status == 200:
        bad = non_finite(response) if probe.finite_ok else "a wrong success"
        return [f"a 200 with {bad}: {text}"] if bad else []
    found = []
    if probe.status is not None and status != probe.status:
        found.append(f"expected {probe.status}, got {status}: {text}")
    elif not 400 <= status < 500:
        found.append(f"expected a 4xx, got {status}: {text}")
    try:
        body = response.json()
    except ValueError:
        return [*found, f"the error is not JSON: {text!r}"]
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)):
        return [*found, f'the error is not {{"error": "<message>"}}: {text}']
    if not body["error"].strip():
        found.append("the error message is empty")
    missing = [w for w in probe.says if w.lower() not in body["error"].lower()]
    if missing:
        found.append(f"the error message does not say {missing}: {body['error']!r}")
    return found


def non_finite(response: httpx.Response) -> str:
    """'NaN or infinity' / 'null where numbers belong' when a 200's outputs hold such values."""
    length = response.headers.get(HEADER)
    content = response.content[: int(length)] if length else response.content
    body = json.loads(content)  # the stdlib reads NaN and Infinity, as a lenient client would
    if isinstance(body, dict) and "outputs" in body:
        numbers = [v for output in body["outputs"] for v in _leaves(output.get("data"))]
    else:
        numbers = list(_leaves(body.get("predictions") if isinstance(body, dict) else body))
    if any(v is None for v in numbers):
        return "null where numbers belong"
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        return "NaN or infinity"
    return ""


def _leaves(value: object) -> Iterator[object]:
    if isinstance(value, list | dict):
        for v in value.values() if isinstance(value, dict) else value:
            yield from _leaves(v)
    else:
        yield value


def check(server, probe: Probe, good_v1: Mapping, good_v2: Mapping) -> None:
    """Assert that the server handled the probe as the module docstring says."""
    found = problems(server, probe, good_v1, good_v2)
    assert not found, f"{probe.name}: " + "; ".join(found)


def run(server, good_v1: Mapping, good_v2: Mapping, *, max_request_bytes: int) -> dict[str, list]:
    """Every probe: {probe name: its problems} (empty lists for the probes that passed)."""
    return {
        p.name: problems(server, p, good_v1, good_v2)
        for p in probes(good_v1, good_v2, max_request_bytes=max_request_bytes)
    }
