# %% [markdown]
# # MNIST, end to end on a laptop
#
# This notebook tells the local half of the mnist case study: look at the data, train the small
# convolutional network that every Kubeflow piece of this case runs, see how it learned and where
# it fails, then serve it with the same KServe model server the InferenceService runs and ask it
# about a few digits, as any client would. Nothing here needs a cluster; `kubeflow.ipynb` takes
# the same steps onto one.
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

# %% tags=["start"]
import os
import sys
from pathlib import Path

case = "mnist"  # this notebook's case study: the folder that holds its case.toml
root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / case / "case.toml").exists())
os.chdir(root)  # the repository root, where `python -m mnist.train` runs too
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
    f"train {train_x.shape} {train_x.dtype}, test {test_x.shape}; "
    f"pixel range {train_x.min()}-{train_x.max()}"
)

fig, axes = plt.subplots(2, 8, figsize=(10, 3))
for ax, image, label in zip(axes.flat, train_x, train_y, strict=False):
    ax.imshow(image, cmap="gray")
    ax.set_title(f"label {label}", fontsize=10)
    ax.axis("off")
fig.suptitle("The first training digits and their labels")
plt.show()

# %% [markdown]
# How many examples of each digit are there? A class that is rare in training is one the model
# learns badly, and a lopsided test set would make accuracy flatter it.

# %%
counts = np.bincount(train_y, minlength=10)
print(f"training digits per class: {counts.min()} to {counts.max()}")
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.bar(range(10), counts)
ax.set_xticks(range(10))
ax.set_xlabel("digit")
ax.set_ylabel("training images")
ax.set_title("Training digits per class")
plt.show()

# %% [markdown]
# The sample holds exactly 400 of each digit: it was drawn that way (`sample/make_sample.py`).
# The full MNIST is close to balanced too, from 5,421 fives to 6,742 ones. So accuracy is a fair
# single number here, and a model that guesses gets 0.10.

# %% [markdown]
# ## 2. Train
#
# `mnist.train` is the single-process trainer: the pipeline's train step runs it, and
# `mnist.train_distributed` (the TrainJob's and the Katib trials' command) is the same steps
# spread over several processes. Calling its `main` with command-line arguments here runs exactly
# that code: it holds out 10% of the training digits for validation, prints `name=value` lines
# after each epoch (what Katib's StdOut collector reads) and writes `model.keras`, `metrics.json`
# and `history.json`.

# %%
import json

from mnist import train

model_dir = work / "model"
args = ["--model-dir", str(model_dir), "--epochs", str(epochs)]
metrics = train.main(args + (["--sample"] if sample else []))
print({k: round(v, 4) for k, v in metrics.items()})

# %% [markdown]
# Here is the model `train.py` built (`mnist.model.build_keras_model`), loaded back from
# `model.keras` as the model server will load it.

# %%
import keras

model = keras.saving.load_model(model_dir / "model.keras")
model.summary()

# %% [markdown]
# It is deliberately small: two blocks of a 3 x 3 convolution and a 2 x 2 max-pooling, then
# dropout and one dense layer with a softmax over the ten digits. A convolution applies the same
# few weights at every position of the image, so a stroke is recognised wherever it is; the
# pooling halves the map twice, from 28 x 28 to 7 x 7. That makes 50,186 trainable weights, most
# of them in the last layer, small enough to train on a laptop in seconds and to serve on a
# fraction of a CPU; the "optimizer params" are Adam's two running averages per weight, saved so
# training can resume. A two-block CNN like this one usually reaches about 0.99 on the full
# MNIST (the case README says more).

# %% [markdown]
# ## 3. How it learned
#
# Training and validation curves that stay close mean the model is not memorising the training
# digits. The training figures are averages over each epoch while the weights still change,
# and dropout is on only in training, so validation may be the better of the two early on.

# %%
from matplotlib.ticker import MaxNLocator

history = json.loads((model_dir / "history.json").read_text())
epochs_axis = range(1, len(history["loss"]) + 1)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, metric in ((left, "loss"), (right, "accuracy")):
    ax.plot(epochs_axis, history[metric], marker="o", label="training")
    ax.plot(epochs_axis, history[f"val_{metric}"], marker="o", label="validation")
    ax.set_title(f"{metric} after each epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
fig.tight_layout()
plt.show()
for epoch in epochs_axis:
    accuracy, validation = history["accuracy"][epoch - 1], history["val_accuracy"][epoch - 1]
    print(f"epoch {epoch}: training accuracy {accuracy:.3f}, validation accuracy {validation:.3f}")

# %% [markdown]
# ## 4. Where it fails
#
# The confusion matrix counts, for each true digit (row), what the model said (column). The
# diagonal is right; the cells off it are the mix-ups. The colours follow a log scale, so that a
# handful of mistakes shows next to a hundred correct answers; cells with no digit stay white.

# %%
from matplotlib.colors import LogNorm

probabilities = model.predict(data.normalize(test_x), verbose=0)
predicted = probabilities.argmax(axis=1)
accuracy = float((predicted == test_y).mean())
confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (test_y, predicted), 1)
print(f"test accuracy {accuracy:.4f} on {len(test_y)} digits")
pairs = sorted((confusion[t, p], t, p) for t in range(10) for p in range(10) if t != p)
for count, true, said in pairs[-3:][::-1]:
    print(f"{count} test digits {true} taken for {said}")

fig, ax = plt.subplots(figsize=(6, 5))
norm = LogNorm(vmin=1, vmax=confusion.max())
cmap = plt.get_cmap("Blues").with_extremes(bad="white")
picture = ax.imshow(np.ma.masked_equal(confusion, 0), cmap=cmap, norm=norm)
for (row, col), count in np.ndenumerate(confusion):
    if count:  # white on the dark cells, black on the light ones
        colour = "white" if norm(count) > 0.6 else "black"
        ax.text(col, row, count, ha="center", va="center", fontsize=8, color=colour)
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_xlabel("predicted digit")
ax.set_ylabel("true digit")
ax.set_title("Confusion matrix (test digits)")
ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= confusion.max()]
fig.colorbar(picture, ax=ax, label="test digits (log scale)", ticks=ticks, format="%d")
plt.show()

# %% [markdown]
# On the sample the commonest mix-ups printed above are sevens and fours taken for nines: digits
# that share their strokes. Here are the misclassified digits themselves.

# %%
wrong = np.flatnonzero(predicted != test_y)
print(f"{len(wrong)} of {len(test_y)} test digits misclassified")
fig, axes = plt.subplots(2, 8, figsize=(10, 3.2))
for ax in axes.flat:
    ax.axis("off")
for ax, index in zip(axes.flat, wrong, strict=False):
    ax.imshow(test_x[index], cmap="gray")
    ax.set_title(f"{test_y[index]}, said {predicted[index]}", fontsize=9)
fig.suptitle("Misclassified test digits: the true digit, then what the model said")
fig.tight_layout()
plt.show()

# %% [markdown]
# Some of them a person would hesitate over too; others are plain digits that a model trained
# for a few epochs on a few thousand examples has not learnt yet. The full data and more epochs
# close most of that gap.
#
# ## 5. Serve and query
#
# `mnist.serve` is a KServe model server: in the cluster the InferenceService runs
# `python -m mnist.serve --model_name mnist --model_dir /mnt/models`, where KServe's storage
# initializer has put the trained model. Here we start the same command as a process of our own,
# with our model folder instead of /mnt/models, on a free port of 127.0.0.1 (this machine only),
# and wait until it says the model is ready. `start_server` is all it takes.

# %%
import atexit
import socket
import subprocess
import time

import requests


def start_server(module: str, name: str, model: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """Start `python -m <module>` serving `model` on a free port of 127.0.0.1; wait until the
    model is ready; return the process and the server's URL. Its output goes to `log`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # port 0: the system picks a free one
        port = s.getsockname()[1]
    command = [sys.executable, "-m", module, "--model_name", name, "--model-dir", str(model)]
    command += ["--host", "127.0.0.1", "--http_port", str(port)]
    with log.open("w") as out:  # the child keeps its own copy of the file
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    atexit.register(server.terminate)  # should the notebook stop before it does
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # a minute at most
        if server.poll() is not None:
            raise RuntimeError(f"{module} exited with code {server.returncode}: see {log}")
        try:
            if requests.get(f"{url}/v2/models/{name}/ready", timeout=1).ok:
                return server, url
        except requests.ConnectionError:
            pass  # not listening yet
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"{module} was not ready after a minute: see {log}")


server, url = start_server("mnist.serve", "mnist", model_dir, work / "server.log")
print(f"mnist.serve is process {server.pid}, ready at {url}")

# %% [markdown]
# A V1 request is a JSON object whose `instances` are the inputs, here four test images as lists
# of pixel values 0-255; the answer gives each digit and its ten class probabilities, which must
# be the digits `model.predict` gave above.

# %%
batch = test_x[:4]
answer = requests.post(f"{url}/v1/models/mnist:predict", json={"instances": batch.tolist()})
print("HTTP", answer.status_code)
served = [p["digit"] for p in answer.json()["predictions"]]
print("served digits:    ", served)
print("in-process digits:", predicted[:4].tolist())
print("true labels:      ", test_y[:4].tolist())

# %% [markdown]
# People also send pictures. `mnist.client` sends a PNG file, base64-encoded, as clients of
# TensorFlow Serving once did; the server turns it into a 28 x 28 digit first.

# %%
from PIL import Image

png = work / "digit.png"
Image.fromarray(test_x[0]).save(png)
query = [sys.executable, "-m", "mnist.client", "--image", str(png), "--url", url]
print(subprocess.run(query, capture_output=True, text=True, check=True).stdout)

# %% [markdown]
# The server runs until we stop it. We stop it by its process id, with the signal Kubernetes
# sends a pod it deletes: SIGTERM.

# %% tags=["stop_server"]
import signal

server.send_signal(signal.SIGTERM)  # to process server.pid, and to nothing else
code = server.wait(timeout=30)
print(f"process {server.pid} stopped:", "by SIGTERM" if code == -signal.SIGTERM else f"code {code}")

# %% [markdown]
# That is the whole local loop. `kubeflow.ipynb` submits the same training as a TrainJob, tunes
# it with a Katib Experiment, runs it as a Kubeflow pipeline and deploys the InferenceService.
