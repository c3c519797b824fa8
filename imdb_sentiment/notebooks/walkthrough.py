# %% [markdown]
# # Movie-review sentiment, end to end on a laptop
#
# Is a movie review positive or negative? This notebook tells the local half of the
# imdb_sentiment case study: look at the reviews and at what must be cleaned out of them, train
# the bidirectional LSTM that every Kubeflow piece of this case runs and the TF-IDF baseline
# beside it, see how the network learned, check that its probabilities mean what they say, read
# the reviews it gets wrong, and ask it which words decided. Nothing here needs a cluster;
# `kubeflow.ipynb` takes the same steps onto one.
#
# It runs top to bottom on the committed sample (800 training and 400 test reviews, written for
# this repository in the IMDB data set's own layout) in about a minute. Set `sample = False` to
# download the real IMDB Large Movie Review data set (25,000 + 25,000 reviews, 84 MB) once and
# train on it; the BiLSTM then takes tens of minutes on a laptop's CPU.

# %% tags=["parameters"]
sample = True  # the committed sample; False downloads the IMDB archive (84 MB) once
epochs = 5  # BiLSTM epochs: 5 reach about 0.88 test accuracy on the sample
work_dir = "runs/imdb_sentiment-walkthrough"  # trained models go here

# %% [markdown]
# The notebook imports the case as a package (`from imdb_sentiment import ...`), like
# `python -m imdb_sentiment.train` does, so it works from the repository root whether Jupyter
# started there or in this folder.

# %%
# Copied from mnist.notebooks.walkthrough.start with mnist->imdb_sentiment
import os
import sys
from pathlib import Path

case = "imdb_sentiment"  # this notebook's case study: the folder that holds its case.toml
root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / case / "case.toml").exists())
os.chdir(root)  # the repository root, where `python -m imdb_sentiment.train` runs too
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)
print("repository:", root, "\nwork dir:", work)

# %% [markdown]
# ## 1. The reviews
#
# Maas et al. (2011) collected 50,000 IMDB reviews, half for training and half for testing,
# evenly split between positive (7 stars or more) and negative (4 stars or fewer); the stars
# are in each file's name and the folder (`pos/`, `neg/`) is the label. `imdb_sentiment.data`
# reads that layout straight from the archive, for the sample and the real data alike.

# %%
import matplotlib.pyplot as plt
import numpy as np

from imdb_sentiment import data

if sample:
    (train_texts, train_labels), (test_texts, test_labels) = data.load_sample()
else:
    (train_texts, train_labels), (test_texts, test_labels) = data.load_imdb(data.DEFAULT_DATA_DIR)
print(f"{len(train_texts)} training reviews ({train_labels.mean():.0%} positive),")
print(f"{len(test_texts)} test reviews ({test_labels.mean():.0%} positive)")
for label in (1, 0):
    first = train_texts[int(np.flatnonzero(train_labels == label)[0])]
    print(f"\n{data.LABELS[label]}: {first[:400]}{' ...' if len(first) > 400 else ''}")

# %% [markdown]
# Both classes are the same size, so accuracy is a fair single number and a guess scores 0.50.
#
# How long are the reviews? The BiLSTM reads a fixed number of words of each review
# (`--sequence-length`, 300 by default) and cuts the rest, so the lengths tell us how much of a
# review it sees.

# %%
lengths = np.array([len(text.split()) for text in train_texts])
fig, ax = plt.subplots(figsize=(7, 3.2))
bins = np.linspace(0, lengths.max() + 1, 30)
for label, name in ((1, "positive"), (0, "negative")):
    ax.hist(lengths[train_labels == label], bins=bins, histtype="step", linewidth=2, label=name)
if lengths.max() > 300:  # the real reviews: mark where the BiLSTM stops reading
    ax.axvline(300, color="grey", linestyle="--", linewidth=1)
    ax.text(300, ax.get_ylim()[1] * 0.9, " words the BiLSTM reads", color="grey", fontsize=9)
ax.set_xlabel("words in the review")
ax.set_ylabel("training reviews")
ax.set_title("Review lengths, by label")
ax.legend()
fig.tight_layout()
plt.show()
print(f"median {np.median(lengths):.0f} words, longest {lengths.max()};",
      f"{np.mean(lengths > 300):.1%} are longer than 300")  # fmt: skip

# %% [markdown]
# Positive and negative reviews are about as long as each other, so length alone says nothing
# about the verdict. The sample's reviews are short (a few sentences about a handful of aspects
# of a film), so the network reads every word of them. The real ones are longer and vary more:
# a median of about 170 words, and a few reviews run to more than a thousand; of those, the
# network reads the first 300 words (the dashed line, drawn when some review passes it).
#
# ### HTML line breaks, and the cleaning
#
# The reviews were scraped from web pages: paragraphs are separated by HTML line breaks,
# `<br /><br />`. Left in, `br` would become one of the most frequent "words" of the
# vocabulary. Both models clean text with one rule (`model.standardize_text` in Python, the same
# rule as a TensorFlow function inside the Keras model): line breaks become spaces, letters are
# lower-cased, punctuation goes. Because the rule lives inside the saved model, the server gets
# raw text and cleans it exactly as training did.

# %%
from imdb_sentiment.model import standardize_text

with_breaks = sum("<br" in text.lower() for text in train_texts)
print(f"{with_breaks} of {len(train_texts)} training reviews contain <br />\n")
example = next(text for text in train_texts if "<br />" in text)
cut = example.index("<br />") + 60
print("raw:    ", example[:cut], "...")
print("cleaned:", standardize_text(example[:cut]), "...")

# %% [markdown]
# ## 2. Train the BiLSTM
#
# `imdb_sentiment.train` is the single-process trainer: the same code the Katib trials and the
# TrainJob run (as `train_distributed`, spread over several processes). Calling its `main` with
# command-line arguments runs exactly that. It holds out 20% of the training reviews: the
# network's `val_accuracy` is measured on them, and so is the calibration of section 5. It
# prints `name=value` lines after each epoch (what Katib's StdOut collector reads) and writes
# `model.keras`, `calibration.json`, `metrics.json` and `history.json`.

# %%
import json

from imdb_sentiment import train

bilstm_dir = work / "bilstm"
sample_flag = ["--sample"] if sample else []
bilstm = train.main(["--model-dir", str(bilstm_dir), "--epochs", str(epochs), *sample_flag])

# %% [markdown]
# Here is the model `train.py` saved, loaded back as the model server loads it. It takes raw
# review strings: the `TextVectorization` layer cleans them with the rule above and turns each
# word into its index in a vocabulary learnt from the training reviews (at most 20,000 words;
# 0 pads, 1 is a word outside the vocabulary). The `bilstm` block holds the network itself.

# %%
from imdb_sentiment.model import load_keras

exported = load_keras(bilstm_dir / "model.keras")
exported.summary()
exported.get_layer("bilstm").summary()

# %% [markdown]
# The network is the one of the TensorFlow text-classification tutorial: an `Embedding` gives
# each word a vector of 64 numbers, learnt with the rest; a `Bidirectional` LSTM reads the
# review forwards and backwards and sums it up in 2 x 64 numbers, so "not" can change what
# the word after it means; two `Dense` layers turn that into the probability that the review is
# positive. The embedding holds most of the weights (one vector per vocabulary word), and
# `mask_zero` makes the LSTMs skip the padding of short reviews.
#
# ## 3. How it learned

# %%
from matplotlib.ticker import MaxNLocator

history = json.loads((bilstm_dir / "history.json").read_text())
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
# After the first epoch the loss is still close to 0.69 (ln 2, what a coin that says 50% for
# every review gets): the network is still learning which words matter. Then it falls quickly.
# Training accuracy goes on rising after validation accuracy levels off: the gap is the network
# starting to memorise its training reviews, and once the validation loss turns up, more
# epochs only make it worse. On the small sample that comes after a few epochs, on the real
# data set later. The number of epochs is one of the values the Katib Experiment tunes.
#
# ## 4. The baseline beside the network
#
# A fair question for any neural network: does it beat a simple model? The classic answer for
# review sentiment is TF-IDF on words and word pairs (1- and 2-grams) with a logistic
# regression, which reads no word order beyond pairs but trains in seconds. `train.py --model
# tfidf` trains it on the same reviews, with the same hold-out and the same calibration.

# %%
import pandas as pd

tfidf_dir = work / "tfidf"
tfidf = train.main(["--model-dir", str(tfidf_dir), "--model", "tfidf", *sample_flag])
comparison = pd.DataFrame(
    {
        "BiLSTM": bilstm,
        "TF-IDF + logistic regression": tfidf,
    }
).loc[["test_accuracy", "test_loss", "test_ece", "train_seconds", "train_reviews_per_second"]]
comparison.index = [
    "test accuracy",
    "test log loss",
    "test calibration error (ECE)",
    "training time (s)",
    "reviews trained per second",
]
comparison.round(3)

# %% [markdown]
# On the sample the baseline is as accurate as the network or better, in a small fraction of
# the time. That is not a fluke of the sample: on the full data set too TF-IDF with a logistic
# regression reaches about 0.89-0.90, and this BiLSTM about 0.87 (the TensorFlow tutorials
# report 0.86-0.87). The network earns its keep when word order matters beyond pairs, and it is
# the model that shows the whole Kubeflow journey (distributed training, tuning, serving a
# TensorFlow model), which is why this case trains both and reports them side by side.
#
# ## 5. Can its probabilities be trusted? Calibration
#
# A model that says "90% positive" should be right about 90% of the time on such reviews.
# Networks trained with cross-entropy are often over-confident. `train.py` therefore fits
# Platt scaling on the held-out validation reviews: a logistic regression on the network's raw
# logit, saved as `calibration.json` and applied by `SentimentModel` (and so by the server).
#
# The reliability diagram sorts the test reviews into ten bins of predicted probability and
# plots the share that really is positive in each bin: a calibrated model stays on the
# diagonal. The expected calibration error (ECE) is the average distance to it, weighted by the
# bin's size.

# %%
from imdb_sentiment.model import SentimentModel, expected_calibration_error

model = SentimentModel.load(bilstm_dir)
raw = model.classifier.raw_probabilities(test_texts)
calibrated = model.calibration(raw)
print("calibration:", model.calibration)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10):
    """(mean predicted probability, share positive, reviews) of each non-empty bin."""
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    found = [b for b in range(bins) if np.any(which == b)]
    return (
        np.array([probabilities[which == b].mean() for b in found]),
        np.array([labels[which == b].mean() for b in found]),
        np.array([np.sum(which == b) for b in found]),
    )


fig, ax = plt.subplots(figsize=(5.2, 5))
ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
for name, probabilities in (("raw network", raw), ("after Platt scaling", calibrated)):
    predicted, actual, counts = reliability(probabilities, test_labels)
    ece = expected_calibration_error(probabilities, test_labels)
    ax.plot(predicted, actual, marker="o", label=f"{name} (ECE {ece:.3f})")
ax.set_xlabel("predicted probability of positive")
ax.set_ylabel("share of reviews that are positive")
ax.set_xlim(0, 1)
ax.set_ylim(0, 1)
ax.set_title("Reliability on the test reviews")
ax.legend(loc="upper left")
fig.tight_layout()
plt.show()
print(f"ECE before calibration {expected_calibration_error(raw, test_labels):.3f},",
      f"after {expected_calibration_error(calibrated, test_labels):.3f}")  # fmt: skip

# %% [markdown]
# Platt scaling keeps the order of the predictions (accuracy does not change); it only stretches
# or squeezes the probabilities, two numbers fitted on the validation reviews (printed above).
# On the sample be careful with what the plot says: the scaling is fitted on 160 validation
# reviews and measured on 400 test reviews, a few dozen per bin, so the points wobble and ECEs
# a few hundredths apart are within that noise; calibration can even come out a little worse
# here. On the full data set it is fitted on 5,000 reviews. `metrics.json` reports the ECE
# before and after for both models (`test_ece_uncalibrated`, `test_ece`), the figures to
# compare on a real run.
#
# ## 6. The reviews it gets wrong, and why
#
# The mistakes it makes with the most confidence are the most instructive. Here are the test
# reviews where the calibrated probability was furthest on the wrong side of 0.5.

# %%
from imdb_sentiment.model import label_of

predicted_labels = (calibrated >= 0.5).astype(int)
accuracy = float(np.mean(predicted_labels == test_labels))
wrong = np.flatnonzero(predicted_labels != test_labels)
print(f"test accuracy {accuracy:.4f} on {len(test_labels)} reviews: {len(wrong)} wrong\n")
worst = wrong[np.argsort(-np.abs(calibrated[wrong] - 0.5))][:3]
for index in worst:
    truth = data.LABELS[test_labels[index]]
    said = label_of(calibrated[index])
    print(f"review {index}, {truth}; the model said {said} ({calibrated[index]:.2f} positive):")
    print("   ", test_texts[index].replace("<br /><br />", "\n    "), "\n")

# %% [markdown]
# Read them and the reasons are the ones people stumble on too: a review that praises most
# aspects of a film and still gives a poor verdict (or the reverse), negations ("was not
# boring at all", "never felt terrific") where a single word points the other way, and reviews
# without a closing verdict, where the model must weigh the aspects itself. A larger data set
# and more epochs teach the network more of these patterns; some reviews stay ambiguous.
#
# ## 7. Which words decided? Attributions
#
# `imdb_sentiment.explain` answers "why" for a single review by occlusion: it takes each
# distinct word out of the review in turn and measures how much the calibrated probability of
# "positive" drops. A word with a positive attribution pushed the review towards positive, a
# negative one towards negative. It asks the model itself, so the answer is honest about what
# this model does (the server's `:explain` returns the same), and it can be checked: taking the
# top words out must move the probability the way their signs say.

# %%
from matplotlib.patches import Patch

from imdb_sentiment import explain

review = test_texts[int(worst[0])] if len(worst) else test_texts[0]
found = explain.explain(model, review, top=10)
words = found["words"]
print(f"P(positive) = {found['probability_positive']:.3f}: {found['label']} ({found['method']})")
fig, ax = plt.subplots(figsize=(6.5, 3.8))
values = [w["attribution"] for w in words][::-1]
colours = ["tab:blue" if v > 0 else "tab:orange" for v in values]
ax.barh([w["word"] for w in words][::-1], values, color=colours)
ax.axvline(0, color="black", linewidth=0.8)
ax.set_xlabel("attribution: drop in P(positive) when the word is taken out")
ax.set_title("The ten words that moved this review's prediction most")
ax.legend(
    handles=[
        Patch(color="tab:blue", label="pushed towards positive"),
        Patch(color="tab:orange", label="pushed towards negative"),
    ],
    loc="lower right",
)
fig.tight_layout()
plt.show()

# %% [markdown]
# The words that decide are not always the adjectives: the network also keys on the sentence
# patterns the reviews are made of ("I did not expect the ... to be so ..."), and on words
# such as "not" whose meaning depends on their neighbours. That is what the attributions are
# for: they show what this model learnt, not what a reader would have looked at. The check:
# take out the
# three words that pushed most towards positive and the probability must fall; take out the
# three that pushed most towards negative and it must rise.

# %%
ranked = sorted(words, key=lambda w: -w["attribution"])
towards_positive = [w["word"] for w in ranked if w["attribution"] > 0][:3]
towards_negative = [w["word"] for w in ranked[::-1] if w["attribution"] < 0][:3]
base = found["probability_positive"]
without_positive = float(model.probabilities([explain.without(review, towards_positive)])[0])
without_negative = float(model.probabilities([explain.without(review, towards_negative)])[0])
print(f"P(positive) {base:.3f}")
print(f"without {towards_positive}: {without_positive:.3f}")
print(f"without {towards_negative}: {without_negative:.3f}")
print("attributions point the right way:", without_positive < base < without_negative)

# %% [markdown]
# ## 8. Serve and query
#
# `imdb_sentiment.serve` is a KServe model server: in the cluster the InferenceService runs
# `python -m imdb_sentiment.serve --model_name imdb --model-dir /mnt/models`, where KServe's
# storage initializer has put the trained model. Here we start the same command as a process of
# our own, with our model folder instead of /mnt/models, on a free port of 127.0.0.1 (this
# machine only), and wait until it says the model is ready. `start_server` is all it takes.

# %%
import atexit
import socket
import subprocess
import time

import requests


# Copied from mnist.notebooks.walkthrough.start_server
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


server, url = start_server("imdb_sentiment.serve", "imdb", bilstm_dir, work / "server.log")
print(f"imdb_sentiment.serve is process {server.pid}, ready at {url}")

# %% [markdown]
# A V1 request is a JSON object whose `instances` are raw review texts, line breaks and all: the
# model inside the server cleans them as training did. The answer gives each review's label and
# its calibrated probability of being positive, which must be what the model says in this
# process. `:explain` takes the same body and answers with the words that moved each
# prediction most, by the occlusion of section 7.

# %%
reviews = [test_texts[int(np.flatnonzero(test_labels == 1)[0])], test_texts[0]]
answer = requests.post(f"{url}/v1/models/imdb:predict", json={"instances": reviews})
print("HTTP", answer.status_code)
predictions = answer.json()["predictions"]
in_process = model.probabilities(reviews)
print("served labels:    ", [p["label"] for p in predictions])
print("in-process labels:", [label_of(p) for p in in_process])
served = [p["probability_positive"] for p in predictions]
print("served probabilities equal in-process:", bool(np.allclose(served, in_process, atol=1e-6)))

explained = requests.post(f"{url}/v1/models/imdb:explain", json={"instances": reviews[:1]})
words = explained.json()["explanations"][0]["words"][:5]
print("served explanation:", ", ".join(f"{w['word']} {w['attribution']:+.3f}" for w in words))
top = explain.explain(model, reviews[0], top=5)["words"]
print("in-process:        ", ", ".join(f"{w['word']} {w['attribution']:+.3f}" for w in top))

# %% [markdown]
# The server runs until we stop it. We stop it by its process id, with the signal Kubernetes
# sends a pod it deletes: SIGTERM.

# %%
# Copied from mnist.notebooks.walkthrough.stop_server
import signal

server.send_signal(signal.SIGTERM)  # to process server.pid, and to nothing else
code = server.wait(timeout=30)
print(f"process {server.pid} stopped:", "by SIGTERM" if code == -signal.SIGTERM else f"code {code}")

# %% [markdown]
# That is the whole local loop: the data, two models side by side, calibrated probabilities,
# explanations that can be checked, and the server that answers with both. `kubeflow.ipynb`
# tunes the network with a Katib Experiment, trains it on several nodes as a TrainJob, runs the
# whole as a Kubeflow pipeline and serves it with KServe.
