"""The SavedModel TF Serving serves: its signature, and the book's request answered in process.

TF Serving itself cannot run here, so the SavedModel is loaded with tf.saved_model.load and its
`serving_default` signature is called as TF Serving calls it: by the signature's input names,
with tensors of the signature's dtypes. The answers must be the Keras model's own predictions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from recommender import data
from recommender.export import (
    PURCHASES_FILE,
    SIGNATURE,
    VERSION_FILE,
    Purchases,
    export_savedmodel,
    tfserving_predict,
)
from recommender.model import KERAS_FILE, ItemScorer
from tests.harness import manifests

CASE = Path(__file__).resolve().parents[1]
REPO_ROOT = CASE.parent
REQUEST = CASE / "sample" / "request-tfserving.json"
MANIFEST = CASE / "manifests" / "inferenceservice-tfserving.yaml"
# The SavedModel runs the same float32 graph as Keras; XLA-free CPU kernels agree to rounding.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def keras_model(trained_model_dir: Path):
    import keras

    return keras.saving.load_model(trained_model_dir / KERAS_FILE)


@pytest.fixture(scope="module")
def signature(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path):
    import tensorflow as tf

    base = tmp_path_factory.mktemp("savedmodel")
    path = export_savedmodel(trained_model_dir, base, 1)
    assert path == base / "1" and (path / "saved_model.pb").is_file()
    return tf.saved_model.load(str(path)).signatures


def keras_scores(model, users, products) -> np.ndarray:
    x = {"users": np.asarray(users, np.int32), "products": np.asarray(products, np.int32)}
    return model.predict(x, verbose=0)


def test_serving_default_takes_users_and_products_and_returns_predictions(signature) -> None:
    import tensorflow as tf

    fn = signature[SIGNATURE]
    specs = fn.structured_input_signature[1]
    assert sorted(specs) == ["products", "users"]
    for spec in specs.values():
        assert spec.dtype == tf.int32 and spec.shape.as_list() == [None, 1]
    (name, output), *others = fn.structured_outputs.items()
    assert name == "predictions" and not others
    assert output.dtype == tf.float32 and output.shape.as_list() == [None, 1]


def test_the_books_request_equals_the_keras_model(signature, keras_model) -> None:
    import tensorflow as tf

    inter = data.load_sample()  # the ids of the book's request are indices within the sample's
    assert max(25, 3) < inter.n_users and max(1, 2) < inter.n_items
    out = signature[SIGNATURE](users=tf.constant([[25], [3]]), products=tf.constant([[1], [2]]))
    predictions = out["predictions"].numpy()
    assert predictions.shape == (2, 1)
    expected = keras_scores(keras_model, [[25], [3]], [[1], [2]])
    np.testing.assert_allclose(predictions, expected, rtol=0, atol=TOLERANCE)
    assert predictions[0, 0] != predictions[1, 0]  # two pairs, two answers


def test_the_committed_tfserving_request_through_the_columnar_format(
    signature, keras_model
) -> None:
    body = json.loads(REQUEST.read_text())
    assert body == {
        "signature_name": "serving_default",
        "inputs": {"users": [[25], [3]], "products": [[1], [2]]},
    }
    answer = tfserving_predict(signature, body)
    assert set(answer) == {"outputs"}  # one named output: TF Serving leaves out its name
    expected = keras_scores(keras_model, [[25], [3]], [[1], [2]])
    np.testing.assert_allclose(answer["outputs"], expected, rtol=0, atol=TOLERANCE)
    with pytest.raises(ValueError, match="expected \\['products', 'users'\\]"):
        tfserving_predict(signature, {"inputs": {"users": [[25]], "items": [[1]]}})


def test_a_batch_of_random_pairs_equals_keras_and_the_item_scorer(signature, keras_model) -> None:
    import tensorflow as tf

    n_users = keras_model.get_layer("user_embedding").input_dim
    n_items = keras_model.get_layer("product_embedding").input_dim
    rng = np.random.default_rng(0)
    users = rng.integers(0, n_users, (257, 1))
    items = rng.integers(0, n_items, (257, 1))
    served = signature[SIGNATURE](
        users=tf.constant(users, tf.int32), products=tf.constant(items, tf.int32)
    )["predictions"].numpy()
    np.testing.assert_allclose(
        served, keras_scores(keras_model, users, items), rtol=0, atol=TOLERANCE
    )
    every = ItemScorer(keras_model)(users[:, 0])  # (257, n_items): each user's row
    np.testing.assert_allclose(served[:, 0], every[np.arange(257), items[:, 0]], atol=1e-5)


@pytest.mark.parametrize(
    "users, products, says",
    [([[-1]], [[0]], "users: expected indices from 0"), ([[0]], [[10**6]], "products: expected")],
    ids=["negative-user", "product-out-of-range"],
)
def test_an_index_out_of_range_is_invalid_argument(signature, users, products, says) -> None:
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=says):
        signature[SIGNATURE](users=tf.constant(users), products=tf.constant(products))


def test_purchases_hold_every_purchase_and_each_products_buyers(tmp_path: Path) -> None:
    inter = data.load_sample()
    purchases = Purchases.of(inter)
    assert (purchases.n_users, purchases.n_items) == (inter.n_users, inter.n_items)
    for user in (0, 25, inter.n_users - 1):
        assert set(purchases.bought(user)) == set(inter.items[inter.users == user])
        assert list(purchases.bought(user)) == sorted(purchases.bought(user))
    distinct = {(int(u), int(i)) for u, i in zip(inter.users, inter.items, strict=True)}
    buyers = np.bincount([i for _, i in distinct], minlength=inter.n_items)
    np.testing.assert_array_equal(purchases.popularity, buyers)
    purchases.save(tmp_path)
    again = Purchases.load(tmp_path)
    for field in ("indptr", "items", "popularity"):
        np.testing.assert_array_equal(getattr(again, field), getattr(purchases, field))
    (tmp_path / PURCHASES_FILE).write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a purchases file"):
        Purchases.load(tmp_path)


def export_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recommender.export", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_exports_the_published_version_and_adds_purchases(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / PURCHASES_FILE).unlink(missing_ok=True)
    (model_dir / VERSION_FILE).write_text("3\n")
    base = tmp_path / "savedmodel"
    run = export_cli("--model-dir", str(model_dir), "--export-dir", str(base), "--sample")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (base / "3" / "saved_model.pb").is_file()
    assert [p.name for p in base.iterdir()] == ["3"]  # no partial folder left behind
    saved = Purchases.load(model_dir)
    np.testing.assert_array_equal(saved.popularity, Purchases.of(data.load_sample()).popularity)

    # A published version is never overwritten: one line, exit 1, before TensorFlow loads.
    again = export_cli("--model-dir", str(model_dir), "--export-dir", str(base))
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip().endswith("exists: a published version is never overwritten;"
                                         " pass another --version"), again.stderr  # fmt: skip


def test_the_cli_refuses_data_whose_ids_are_not_the_models(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / PURCHASES_FILE).unlink(missing_ok=True)
    other = tmp_path / "other.csv"
    other.write_text("customerId,products\n1,2\n5,7|2\n")
    run = export_cli("--model-dir", str(model_dir), "--data-file", str(other))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "ids differ from mappings.json" in run.stderr, run.stderr
    assert not (model_dir / PURCHASES_FILE).exists()


def test_the_tfserving_manifest_serves_the_savedmodel_on_kserves_tensorflow_runtime() -> None:
    assert manifests.validate_file(MANIFEST) == []
    (isvc,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["storageUri"] == "pvc://recommender-models/savedmodel"
    assert model["securityContext"]["runAsNonRoot"] is True
    assert model["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(model["resources"]) == {"requests", "limits"}
