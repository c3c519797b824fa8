"""Export the trained model as a TF Serving SavedModel, and what the KServe server needs beside it.

    python -m recommender.export --model-dir /tmp/rec --export-dir /tmp/savedmodel
    python -m recommender.export --model-dir /tmp/rec --export-dir /tmp/savedmodel --version 2

**The SavedModel** goes to `<export-dir>/<version>/`, the layout TF Serving reads (its
`--model_base_path` holds one numbered folder per version and it serves the highest; KServe's
TensorFlow runtime points it at /mnt/models). Its `serving_default` signature is the book's:

    inputs:  users     int32 (-1, 1)   customer indices, 0 .. n_users - 1
             products  int32 (-1, 1)   product indices, 0 .. n_items - 1
    outputs: predictions float32 (-1, 1)   the model's score of each pair (higher: more likely)

so TF Serving answers the book's request in its columnar format,

    POST /v1/models/recommender:predict
    {"signature_name": "serving_default", "inputs": {"users": [[25], [3]], "products": [[1], [2]]}}
    -> {"outputs": [[0.18], [0.10]]}

(one named output, so TF Serving leaves out its name; `tfserving_predict` below does what TF
Serving does with such a body, and the tests feed sample/request-tfserving.json through it).
An index outside the model's range fails the signature's own check with InvalidArgument, which
TF Serving answers with a 400: without the check, an embedding lookup out of range is an error
on a CPU and a silent row of zeros on a GPU. TF Serving knows indices only: the raw customer and
product ids are in mappings.json, and recommendations by raw id are serve.py's.

The version is --version, by default the number in `<model-dir>/VERSION` (the pipeline writes it
when it publishes a model), else 1.

**purchases.npz** is what serve.py needs beside model.keras and mappings.json: every product each
customer bought (the whole data set, not only the training split: a recommendation must never
offer what a customer already has) and how many customers bought each product (the fallback for
a customer the model does not know). `save_purchases` writes it; train.py and train_distributed.py
call it beside `IdMapping.save`. For a model folder without one (written before they did), this
command writes it from the data the same flags as train.py's choose (`--sample`, `--data-file`,
...), after checking that the data's ids are the ones in mappings.json.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recommender import data
from recommender.cli import existing_path, fail, output_dir, positive_int
from recommender.model import KERAS_FILE

if TYPE_CHECKING:
    import keras

    from recommender.data import Interactions

SIGNATURE = "serving_default"
VERSION_FILE = "VERSION"  # the published version of the model in a folder, one line
PURCHASES_FILE = "purchases.npz"


def model_version(model_dir: Path | str) -> str | None:
    """The text of `<model_dir>/VERSION` (the pipeline's published version), or None."""
    path = Path(model_dir) / VERSION_FILE
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").strip()
    return text or None


def serving_function(model: keras.Model, n_users: int, n_items: int):
    """The `serving_default` function: users and products (int32, (-1, 1)) -> {"predictions"}.

    Named inputs, because TF Serving matches a columnar request's keys to the signature's input
    names, and a dict output, because the output's key is the name a client reads.
    """
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 1], tf.int32, name="users"),
            tf.TensorSpec([None, 1], tf.int32, name="products"),
        ]
    )
    def serve(users, products):
        checks = []
        for name, ids, size in (("users", users, n_users), ("products", products, n_items)):
            message = f"{name}: expected indices from 0 to {size - 1}"
            checks.append(tf.debugging.assert_non_negative(ids, message=message))
            checks.append(tf.debugging.assert_less(ids, tf.constant(size, tf.int32), message))
        with tf.control_dependencies(checks):  # checked before the embeddings look them up
            users, products = tf.identity(users), tf.identity(products)
        scores = model({"users": users, "products": products}, training=False)
        return {"predictions": scores}

    return serve


def export_savedmodel(model_dir: Path | str, export_dir: Path | str, version: int) -> Path:
    """Write model.keras of model_dir as `<export_dir>/<version>/`, a SavedModel; return it.

    Written into a hidden folder beside it and renamed into place, so that TF Serving, which
    polls export_dir for new versions, never loads half a model. A version already there is
    never replaced (FileExistsError): TF Serving may be serving it.
    """
    import keras

    target = Path(export_dir) / str(version)
    if target.exists():
        raise FileExistsError(f"{target} exists: a published version is never overwritten")

    model = keras.saving.load_model(Path(model_dir) / KERAS_FILE)
    n_users = model.get_layer("user_embedding").input_dim
    n_items = model.get_layer("product_embedding").input_dim
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serving_function(model, n_users, n_items))
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    archive.write_out(str(partial), verbose=False)
    partial.replace(target)
    return target


def tfserving_predict(signatures, body: dict) -> dict:
    """What TF Serving's REST predict does with a columnar body, against a loaded SavedModel's
    signatures (`tf.saved_model.load(path).signatures`): pick `signature_name` (default
    serving_default), give each named input the signature's dtype, answer `{"outputs": ...}`,
    the bare value when the signature has one output, as TF Serving does."""
    import tensorflow as tf

    signature = signatures[body.get("signature_name", SIGNATURE)]
    specs = signature.structured_input_signature[1]
    inputs = body["inputs"]
    if set(inputs) != set(specs):
        raise ValueError(f"inputs: expected {sorted(specs)}, got {sorted(inputs)}")
    outputs = signature(**{k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()})
    values = {name: tensor.numpy().tolist() for name, tensor in outputs.items()}
    return {"outputs": next(iter(values.values())) if len(values) == 1 else values}


@dataclass
class Purchases:
    """Who bought what, by index: customer u bought items[indptr[u]:indptr[u + 1]] (sorted), and
    popularity[i] customers bought product i."""

    indptr: np.ndarray  # int64 (n_users + 1,)
    items: np.ndarray  # int64 (distinct customer-product pairs,)
    popularity: np.ndarray  # int64 (n_items,)

    @classmethod
    def of(cls, inter: Interactions) -> Purchases:
        keys = np.unique(inter.users.astype(np.int64) * inter.n_items + inter.items)
        users, items = keys // inter.n_items, keys % inter.n_items
        indptr = np.r_[0, np.cumsum(np.bincount(users, minlength=inter.n_users))]
        return cls(indptr, items, np.bincount(items, minlength=inter.n_items))

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    def bought(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def save(self, folder: Path | str) -> Path:
        """Write `<folder>/purchases.npz` (atomically: a reader never sees half a file)."""
        path = Path(folder) / PURCHASES_FILE
        partial = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez_compressed(
            partial, indptr=self.indptr, items=self.items, popularity=self.popularity
        )
        partial.replace(path)
        return path

    @classmethod
    def load(cls, folder: Path | str) -> Purchases:
        path = Path(folder) / PURCHASES_FILE
        try:
            with np.load(path) as arrays:
                return cls(arrays["indptr"], arrays["items"], arrays["popularity"])
        except FileNotFoundError:
            raise  # serve.py says which files the folder needs
        except (OSError, ValueError, KeyError) as err:
            raise data.DataError(f"{path}: not a purchases file ({err})") from err


def save_purchases(inter: Interactions, folder: Path | str) -> Path:
    """Write purchases.npz for `inter`, the whole data set the model's ids come from."""
    return Purchases.of(inter).save(folder)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Export model.keras as a TF Serving SavedModel (serving_default: users,"
        " products -> predictions), and write purchases.npz for serve.py if the folder lacks it."
    )
    parser.add_argument(
        "--model-dir",
        type=existing_path,
        default=Path("model"),
        help="the folder train.py wrote (model.keras, mappings.json) (default: model)",
    )
    parser.add_argument(
        "--export-dir",
        type=output_dir,
        default=Path("savedmodel"),
        help="TF Serving's model base path; the SavedModel goes to <export-dir>/<version>"
        " (default: savedmodel)",
    )
    parser.add_argument(
        "--version",
        type=positive_int,
        default=None,
        help="the SavedModel's version folder (default: the number in <model-dir>/VERSION, else 1)",
    )
    data.add_data_arguments(parser)  # for purchases.npz, when the model folder has none
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if not (args.model_dir / KERAS_FILE).is_file():
        fail(f"no {KERAS_FILE} in {args.model_dir}: train first (python -m recommender.train)")
    version = args.version
    if version is None:
        written = model_version(args.model_dir) or "1"
        if not (written.isascii() and written.isdigit() and int(written) >= 1):
            fail(f"{args.model_dir / VERSION_FILE} says {written!r}: pass --version N (N >= 1)")
        version = int(written)
    try:
        mapping = data.IdMapping.load(args.model_dir)
        if not (args.model_dir / PURCHASES_FILE).is_file():
            inter = data.load_chosen(args)
            if (inter.user_ids, inter.item_ids) != (mapping.user_ids, mapping.item_ids):
                fail(
                    f"the data's customer and product ids differ from {data.MAPPINGS} in"
                    f" {args.model_dir}: give the data the model was trained on"
                )
            print(f"wrote {save_purchases(inter, args.model_dir)}", flush=True)
    except (OSError, data.DataError, data.DownloadError) as err:
        fail(f"{err} (check --model-dir and the data flags)")
    try:
        target = export_savedmodel(args.model_dir, args.export_dir, version)
    except FileExistsError as err:
        fail(f"{err}; pass another --version")
    print(f"wrote SavedModel version {version} to {target}", flush=True)
    return target


if __name__ == "__main__":
    main()
