# %% [markdown]
# # MNIST, end to end on a laptop
#
# This notebook tells the local half of the mnist case study: look at the data, train the CNN
# that every Kubeflow piece of this case runs, see how it learned and where it fails, then serve
# it with the same KServe model server the InferenceService runs and ask it about a few digits.
# Nothing here needs a cluster; `kubeflow.ipynb` takes the same steps onto one.
#
# It runs top to bottom on the committed sample (4,000 training and 1,000 test digits) in about a
# minute. Set `sample = False` to download the full MNIST (60,000 + 10,000) once and train on it.

# %% tags=["parameters"]
sample = True  # the committed sample; False downloads the full MNIST (about 11 MB) once
epochs = 3  # 3 epochs on the sample reach about 0.95 test accuracy
work_dir = "runs/mnist-walkthrough"  # trained model and server logs go here

# %% [markdown]
# The notebook imports the case as a package (`from mnist import ...`), like `python -m mnist.train`
# does, so it works from the repository root whether Jupyter started there or in this folder.

# %%
import os
import sys
from pathlib import Path

root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "mnist" / "case.toml").exists())
os.chdir(root)
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)
print("repository:", root, "\nwork dir:", work)

# %% [markdown]
# ## 1. The data
#
# MNIST is 70,000 greyscale images of handwritten digits, 28 x 28 pixels, white on black, with
# values 0 to 255. `mnist.data` reads them from the original IDX files, whether the committed
# sample or the full set it downloads (checked against published sha256 sums).

# %%
import matplotlib.pyplot as plt
import numpy as np

from mnist import data

if sample:
    (train_x, train_y), (test_x, test_y) = data.load_sample()
else:
    (train_x, train_y), (test_x, test_y) = data.load_mnist(data.DEFAULT_DATA_DIR)
print(
    f"train {train_x.shape} {train_x.dtype}, test {test_x.shape}; pixel range {train_x.min()}-{train_x.max()}"
)

fig, axes = plt.subplots(2, 8, figsize=(10, 3))
for ax, image, label in zip(axes.flat, train_x, train_y, strict=False):
    ax.imshow(image, cmap="gray")
    ax.set_title(int(label))
    ax.axis("off")
fig.suptitle("The first training digits and their labels")
plt.show()

# %% [markdown]
# The classes are close to balanced, so accuracy is a fair single number: a model that guesses
# gets about 0.10.

# %%
counts = np.bincount(train_y, minlength=10)
plt.figure(figsize=(6, 2.5))
plt.bar(range(10), counts)
plt.xticks(range(10))
plt.xlabel("digit")
plt.ylabel("training images")
plt.show()

# %% [markdown]
# ## 2. Train
#
# `mnist.train` is the script the TFJob's single-process sibling, the Katib trials and the pipeline
# all run. Calling its `main` with command-line arguments here runs exactly that code: it holds out
# 10% of the training digits for validation, prints `name=value` lines after each epoch (what
# Katib's StdOut collector reads), and writes `model.keras`, `metrics.json` and `history.json`.

# %%
import json

from mnist import train

model_dir = work / "model"
args = ["--model-dir", str(model_dir), "--epochs", str(epochs)]
metrics = train.main(args + (["--sample"] if sample else []))
print({k: round(v, 4) for k, v in metrics.items()})

# %% [markdown]
# ## 3. How it learned
#
# Training and validation curves that stay close mean the model is not memorising the training
# digits; validation accuracy flattening out says more epochs would add little.

# %%
history = json.loads((model_dir / "history.json").read_text())
epochs_axis = range(1, len(history["loss"]) + 1)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for name in ("loss", "val_loss"):
    left.plot(epochs_axis, history[name], marker="o", label=name)
for name in ("accuracy", "val_accuracy"):
    right.plot(epochs_axis, history[name], marker="o", label=name)
left.set_title("loss")
right.set_title("accuracy")
for ax in (left, right):
    ax.set_xlabel("epoch")
    ax.legend()
plt.show()

# %% [markdown]
# ## 4. Where it fails
#
# The confusion matrix counts, for each true digit (row), what the model said (column). The
# diagonal is right; the brightest cells off it are the pairs the model mixes up.

# %%
import keras

model = keras.saving.load_model(model_dir / "model.keras")
probabilities = model.predict(data.normalize(test_x), verbose=0)
predicted = probabilities.argmax(axis=1)
accuracy = float((predicted == test_y).mean())
confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (test_y, predicted), 1)
print(f"test accuracy {accuracy:.4f} on {len(test_y)} digits")

fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(np.log1p(confusion), cmap="Blues")
for (row, col), count in np.ndenumerate(confusion):
    if count:
        ax.text(col, row, count, ha="center", va="center", fontsize=7)
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title("Confusion matrix (test digits)")
plt.show()

# %% [markdown]
# The misclassified digits themselves are often ones a person would hesitate over too.

# %%
wrong = np.flatnonzero(predicted != test_y)
print(f"{len(wrong)} of {len(test_y)} test digits misclassified")
fig, axes = plt.subplots(2, 8, figsize=(10, 3))
for ax in axes.flat:
    ax.axis("off")
for ax, index in zip(axes.flat, wrong, strict=False):
    ax.imshow(test_x[index], cmap="gray")
    ax.set_title(f"{test_y[index]} as {predicted[index]}", fontsize=9)
fig.suptitle("Misclassified: true as predicted")
plt.show()

# %% [markdown]
# ## 5. Serve and query
#
# `mnist.serve` is a KServe model: the InferenceService runs it in the cluster with
# `--model_dir /mnt/models`. Here the harness starts the very command that
# `manifests/inferenceservice.yaml` names, on a free port of 127.0.0.1, with our trained model
# standing in for /mnt/models, and stops it when the block ends.
#
# A V1 request sends images as lists of pixel values 0-255; the answer gives each digit and its
# ten class probabilities, the same numbers as `model.predict` above.

# %%
from tests.harness import serving

batch = test_x[:4]
with serving.serve(
    "mnist/manifests/inferenceservice.yaml", workdir=work / "serving", model_dir=model_dir
) as server:
    answer = server.v1_predict(batch.tolist())
    print("HTTP", answer.status_code, "from", server.url)
    served = [p["digit"] for p in answer.json()["predictions"]]
    print("served digits:    ", served)
    print("in-process digits:", predicted[:4].tolist())
    print("true labels:      ", test_y[:4].tolist())

    # The client sends a PNG, as people once did against TF Serving.
    from PIL import Image

    png = work / "digit.png"
    Image.fromarray(test_x[0]).save(png)
    import subprocess

    query = [sys.executable, "-m", "mnist.client", "--image", str(png), "--url", server.url]
    print(subprocess.run(query, capture_output=True, text=True, check=True).stdout)

# %% [markdown]
# That is the whole local loop. `kubeflow.ipynb` submits the same training as a TFJob, tunes it
# with a Katib Experiment, runs it as a Kubeflow pipeline and deploys the InferenceService.
