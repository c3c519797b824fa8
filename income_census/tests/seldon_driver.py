"""POST requests to IncomeClassifier through Seldon Core's own REST app, in this process.

Runs in the seldon environment (tests.harness.venvs.ensure("seldon")) from the repository root,
with the repository root on PYTHONPATH:

    .venv-seldon/bin/python income_census/tests/seldon_driver.py MODEL_DIR REQUESTS.json

REQUESTS.json is a list of {"name": ..., "body": ...}: a body that is a string is sent as it is,
anything else as JSON, to /api/v1.0/predictions. stdout gets one JSON list of
{"name", "status", "response"} (the response's JSON, or its text when it is not JSON).
seldon-core-microservice would bind 0.0.0.0 and fork workers; Flask's test client does neither.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seldon_core.metrics import SeldonMetrics
from seldon_core.wrapper import get_rest_microservice

from income_census.seldon_model import IncomeClassifier

PREDICTIONS = "/api/v1.0/predictions"


def main(argv: list[str]) -> None:
    model_dir, requests_file = argv
    model = IncomeClassifier(model_dir=model_dir)
    model.load()  # what seldon-core-microservice does before it serves
    client = get_rest_microservice(model, SeldonMetrics()).test_client()
    results = []
    for request in json.loads(Path(requests_file).read_text()):
        body = request["body"]
        if isinstance(body, str):
            response = client.post(PREDICTIONS, data=body, content_type="application/json")
        else:
            response = client.post(PREDICTIONS, json=body)
        answer = response.get_json(silent=True)
        results.append(
            {
                "name": request["name"],
                "status": response.status_code,
                "response": answer if answer is not None else response.get_data(as_text=True),
            }
        )
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
