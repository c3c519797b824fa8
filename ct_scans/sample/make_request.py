"""Regenerate sample/request.json: a V2 request to denoise one new noisy slice of the phantom.

The slice is the middle one (24 of 48) of `ct_scans.data.phantom()` with a fresh draw of the
case's noise (`data.noisy(..., seed=2)`; the scan that --sample trains on uses seed 1), rounded
to whole Hounsfield units and sent as INT16, as DICOM stores them, with `"percent": 5` as a
request parameter. The output is identical on every run (fixed seeds, no floats).

    python -m ct_scans.sample.make_request
    curl -d @ct_scans/sample/request.json localhost:8080/v2/models/ct-scans/infer
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ct_scans import data

REQUEST_FILE = Path(__file__).resolve().parent / "request.json"
SLICE_INDEX = 24
NOISE_SEED = 2  # not the trained scan's seed 1: the server sees noise it has never seen
PERCENT = 5


def noisy_slice() -> np.ndarray:
    """The request's slice: (1, 64, 64) int16 Hounsfield units."""
    volume = data.noisy(data.phantom(), seed=NOISE_SEED)
    return np.rint(volume[SLICE_INDEX : SLICE_INDEX + 1]).astype(np.int16)


def request_body() -> dict:
    pixels = noisy_slice()
    return {
        "id": "ct-sample",
        "inputs": [
            {
                "name": "slices",
                "shape": list(pixels.shape),
                "datatype": "INT16",
                "data": pixels.ravel().tolist(),
            }
        ],
        "parameters": {"percent": PERCENT},
    }


def render(body: dict) -> str:
    """Compact JSON, one row of pixels a line, so the file stays small and readable in a diff."""
    (tensor,) = body["inputs"]
    cols = tensor["shape"][-1]
    values = tensor["data"]
    rows = [",".join(map(str, values[i : i + cols])) for i in range(0, len(values), cols)]
    head = {k: v for k, v in tensor.items() if k != "data"}
    return (
        "{\n"
        f'  "id": {json.dumps(body["id"])},\n'
        f'  "inputs": [{{{json.dumps(head)[1:-1]}, "data": [\n    '
        + ",\n    ".join(rows)
        + "\n  ]}],\n"
        f'  "parameters": {json.dumps(body["parameters"])}\n'
        "}\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REQUEST_FILE,
        help="output file (default: ct_scans/sample/request.json)",
    )
    args = parser.parse_args(argv)
    text = render(request_body())
    args.out.write_text(text)
    print(f"{args.out}: {len(text)} bytes")


if __name__ == "__main__":
    main()
