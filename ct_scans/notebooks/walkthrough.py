# %% [markdown]
# # Denoising a CT scan with a randomized SVD, on a laptop
#
# This notebook tells the local half of the ct_scans case study, the CT-scan example of
# "Kubeflow for Machine Learning". A CT scan is a stack of slices; a low-dose scan is grainy.
# The book's idea: stack the slices as the columns of one matrix, compute its singular value
# decomposition (SVD), and rebuild the scan without the weakest singular values. The anatomy
# lives in a few strong directions shared by neighbouring slices; the grain is spread thinly
# over all of them, so dropping the weak ones removes more noise than anatomy.
#
# We write a noisy scan as real DICOM files and read it back, look at the matrix and its
# spectrum, check the randomized SVD (the algorithm the book ran on Spark) against NumPy's exact
# one, denoise at the book's percentages (0.1, 1, 5, 10 and 30 %), measure how close each result
# comes to the truth, and finally serve the basis with the same KServe server the
# InferenceService runs and ask it to denoise a slice it has never seen. Nothing here needs a
# cluster; `kubeflow.ipynb` runs the SVD as a SparkApplication, tunes it with Katib and runs the
# pipeline.
#
# There is no real scan in the repository: a *phantom* stands in for one, a head-like volume
# made by code (`ct_scans.data.phantom`: skull, brain, ventricles and 30 small vessels and
# nodules), 48 slices of 64 x 64 pixels. Its great virtue is a known ground truth, so we can
# measure denoising instead of eyeballing it. The whole notebook runs in about ten seconds.

# %% tags=["parameters"]
work_dir = "runs/ct-walkthrough"  # the DICOM series, the basis and server logs go here
rank = 40  # k: how many singular values the randomized SVD computes (train.py's default)

# %% [markdown]
# The notebook imports the case as a package (`from ct_scans import ...`), like
# `python -m ct_scans.train` does, so it works from the repository root whether Jupyter started
# there or in this folder.

# %%
# Copied from mnist.notebooks.walkthrough.start with mnist->ct_scans
import os
import sys
from pathlib import Path

case = "ct_scans"  # this notebook's case study: the folder that holds its case.toml
root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / case / "case.toml").exists())
os.chdir(root)  # the repository root, where `python -m ct_scans.train` runs too
sys.path.insert(0, str(root))
work = Path(work_dir).resolve()
work.mkdir(parents=True, exist_ok=True)
print("repository:", root, "\nwork dir:", work)

# %% [markdown]
# ## 1. The scan, as DICOM
#
# A CT series is a folder of DICOM files, one per slice. Each holds the pixels as 16-bit
# integers plus a header; `RescaleSlope` and `RescaleIntercept` turn the stored integers into
# Hounsfield units (HU: air is -1000, water 0, soft tissue a few tens, bone several hundred), and
# `SliceLocation` says where along the body the slice lies. The files of a series come in no
# particular order, so the reader sorts them by that location.
#
# We take the phantom, add Gaussian noise of 150 HU (`data.noisy`, the grain of a low-dose
# scan), write it with `data.write_series` and read it back with `data.read_series`, the reader
# a real series goes through too.

# %%
import numpy as np
import pydicom

from ct_scans import data

truth = data.phantom()  # (slices, rows, cols) in HU
files = data.write_series(data.noisy(truth), work / "series")
series = data.read_series(work / "series")
volume = series.volume
print(f"{len(files)} DICOM files -> volume {volume.shape} in HU")
print(f"slice locations {series.locations[0]:g} to {series.locations[-1]:g} mm")

header = pydicom.dcmread(files[0], stop_before_pixels=True)
for keyword in ("Modality", "Rows", "Columns", "BitsStored", "RescaleSlope", "RescaleIntercept"):
    print(f"  {keyword:17} {header.get(keyword)}")
# DICOM stores whole Hounsfield units: reading back rounds the noise to the nearest integer.
print("largest difference from what was written:", np.abs(volume - data.noisy(truth)).max())

# %% [markdown]
# Three slices, from near the top of the head to near the bottom, the truth above and the noisy
# scan below, in the bone colour map. The window shows -150 to 250 HU black to white (a
# soft-tissue window, `visualize.WINDOW`): air is black, the skull white, brain grey, and the
# small bright spots are the vessels and nodules, each only a few slices deep. They are the
# detail a good denoiser keeps.

# %%
import matplotlib.pyplot as plt

from ct_scans import visualize

shown = [10, 24, 40]
fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown) + 1, 5.4), layout="constrained")
for column, index in enumerate(shown):
    for row, (label, vol) in enumerate((("truth", truth), ("noisy", volume))):
        ax = axes[row, column]
        low, high = visualize.WINDOW
        picture = ax.imshow(vol[index], cmap="bone", vmin=low, vmax=high)
        ax.set_title(f"{label}, slice {index}", fontsize=9)
        ax.axis("off")
fig.colorbar(picture, ax=axes, shrink=0.6, label="Hounsfield units (window)")
plt.show()

# %% [markdown]
# ## 2. The matrix: one column per slice
#
# `data.to_matrix` unrolls each slice into a column of rows x cols = 4,096 pixels, giving a
# 4,096 x 48 matrix A. Why columns, and why slices? Neighbouring slices of a head are nearly
# the same picture: the skull and brain change slowly from one to the next. So the columns of A
# are close to a combination of a few shared columns, that is, A is close to a matrix of low
# rank, and the SVD finds those shared columns (the left singular vectors, each an image) in
# order of importance. The noise is independent in every pixel of every slice, so it shares
# nothing and spreads evenly over every direction.
#
# The shape matters for the distributed version: a real series has 512 x 512 = 262,144 pixels a
# slice and a few hundred slices, so A is tall and skinny. Spark splits it into blocks of rows
# (pixels), each block small enough for one executor, and only matrices with one side the number
# of slices travel to the driver.
#
# The correlation between every pair of slices shows that structure. In the truth each slice
# resembles its neighbours closely and distant slices less (the phantom is also symmetric top
# to bottom, so slice i resembles slice 47 - i: the other diagonal). The noise weakens every
# correlation but cannot hide the pattern. (The two slices at either end of the truth hold
# only air, a constant picture that correlates with nothing: they are left blank.)

# %%
a = data.to_matrix(volume)
print("A:", a.shape, "(pixels x slices)")
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
for ax, (label, vol) in zip(axes, (("truth", truth), ("noisy scan", volume)), strict=True):
    with np.errstate(invalid="ignore"):  # a constant (all-air) slice has no correlation: NaN
        correlation = np.corrcoef(data.to_matrix(vol).T)
    picture = ax.imshow(correlation, vmin=0, vmax=1, cmap="viridis")
    ax.set_title(f"{label}: correlation of slices", fontsize=10)
    ax.set_xlabel("slice")
    ax.set_ylabel("slice")
fig.colorbar(picture, ax=axes, shrink=0.8, label="correlation")
plt.show()

# %% [markdown]
# ## 3. The singular value spectrum
#
# The singular values of A, largest first, on a log scale, next to those of the truth and of
# the noise alone (the noisy scan minus the truth). The noise's values are all about the same,
# 150 HU x sqrt(4,096 pixels), roughly 9,600: white noise has no preferred direction. The
# truth's fall steeply: a few large values for the skull and brain, a tail for the small
# structures. The noisy scan follows the truth while the truth is above the noise floor, then
# flattens onto the floor: that **knee**, where noise takes over, is where to cut.
#
# The dashed lines are the book's percentages: "drop the singular values under p % of the
# largest". Where a line crosses the spectrum is where it cuts.

# %%
from matplotlib.ticker import FuncFormatter

from ct_scans import model

exact = np.linalg.svd(a.astype(np.float64), compute_uv=False)
of_truth = np.linalg.svd(data.to_matrix(truth).astype(np.float64), compute_uv=False)
of_noise = np.linalg.svd(data.to_matrix(volume - truth).astype(np.float64), compute_uv=False)
knee = int(np.argmax(exact < 1.1 * of_noise.max()))  # the first value within 10 % of the floor
bottom = exact[0] / 2000  # the truth's last values are zero: a log scale must stop somewhere

fig, ax = plt.subplots(figsize=(7, 4))
positions = np.arange(1, len(exact) + 1)
ax.semilogy(positions, exact, "o-", markersize=3, label="noisy scan")
ax.semilogy(positions, of_truth, ".-", color="tab:green", alpha=0.7, label="truth")
ax.semilogy(positions, of_noise, ".-", color="grey", alpha=0.7, label="noise alone")
for percent, colour in zip(model.PERCENTAGES, plt.cm.autumn(np.linspace(0, 0.8, 5)), strict=True):
    level = exact[0] * percent / 100
    ax.axhline(level, color=colour, linestyle="--", linewidth=1)
    ax.text(len(exact), level, f"{percent:g} % ", fontsize=8, ha="right", va="bottom")
ax.axvline(knee + 1, color="black", linewidth=0.8)
ax.text(knee + 1, exact[0], " knee", fontsize=9, va="top")
ax.set_ylim(bottom, exact[0] * 2)
ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))  # 1,000, not 10^3
ax.set_xlabel("position in the spectrum (1 = the largest singular value)")
ax.set_ylabel("singular value (log scale)")
ax.set_title("Singular values of the noisy scan, of the truth and of the noise")
ax.legend(loc="lower left")
plt.show()
print(f"largest {exact[0]:,.0f}; the noise floor {of_noise.min():,.0f} to {of_noise.max():,.0f}")
print(f"knee at value {knee + 1}: {exact[knee]:,.0f} = {100 * exact[knee] / exact[0]:.1f} %")

# %% [markdown]
# Two things to read off the plot. The knee sits at about 3 % of the largest value, so a cut
# at 0.1 % or 1 % lies below the whole spectrum and drops nothing at all, a cut at 5 % falls
# just above the knee, and cuts at 10 % and 30 % go deep into the values that carry anatomy.
# And the truth's values past the knee, the faintest traces of the small structures, lie under
# the noise floor: no cut can bring them back, and even the kept directions stay a little noisy,
# since every singular value of the scan is the truth's plus some noise.
#
# **How the percentages are defined here.** The book says "drop the smallest p % of the
# singular values" without saying of what. This case reads it as a share of the *largest
# singular value* (`model.kept`): drop every value under p % of it. Read as a share of their
# *count* (drop the smallest 10 % of the 40 values, say), the percentages would hardly matter:
# white noise spreads evenly over all components, so dropping a fraction f of them removes at
# most a fraction f of the noise, under half a decibel for f = 10 %, and even 30 % would keep
# all the anatomy. The model.py docstring and the case README give the figures; section 5 shows
# both readings side by side.

# %% [markdown]
# ## 4. The randomized SVD against NumPy's exact one
#
# The book computed the SVD with Mahout's `dssvd(A, k, p, q)`, the randomized algorithm of
# Halko, Martinsson and Tropp, because it needs only a few passes over A, each of which splits
# into independent blocks of rows: exactly what Spark is good at. `model.randomized_svd` is the
# same algorithm in NumPy (and `train_distributed.py` is the same again on Spark):
#
# 1. multiply A by k + p random directions (p extra, "oversampling", to catch what the first k
#    miss), so the product's columns span roughly the top of A's column space;
# 2. sharpen that with q **power iterations**: multiplying by A A^T again and again favours the
#    large singular values over the small ones;
# 3. take an orthonormal basis Q of the result and compute the exact SVD of the small matrix
#    Q^T A, which has only k + p rows.
#
# On this small sample k + p = 50 random directions cover all 48 slices, so the randomized SVD
# of rank 40 we denoise with is exact to rounding. To see the approximation at work, ask for k =
# 10 with p = 10: with no power iteration the values are off by 0.1 to 13 %; one iteration
# brings the errors down to between 1e-8 and 5e-3, two (the case's default) to between 1e-14
# and 2e-4. The last of the k values converge slowest: they sit nearest the noise floor.

# %%
import pandas as pd

table = {"exact (numpy)": exact[:10]}
for q in (0, 1, 2):
    _, s_q, _ = model.randomized_svd(a, 10, p=10, q=q)
    if q == 0:
        table["q=0"] = s_q
    table[f"rel. error q={q}"] = np.abs(s_q / exact[:10] - 1)
comparison = pd.DataFrame(table, index=pd.RangeIndex(1, 11, name="value"))
u, s, vt = model.randomized_svd(a, rank, p=10, q=2)  # what we denoise with: train.py's defaults
error = np.max(np.abs(s / exact[:rank] - 1))
print(f"rank {rank} (k + p >= 48 slices): largest relative error against numpy {error:.1e}")
comparison.map(lambda x: f"{x:.1e}" if x < 1 else f"{x:,.0f}")

# %% [markdown]
# ## 5. Denoised at the book's percentages
#
# `model.reconstruct(u, s, vt, p)` rebuilds A from the singular values that are at least p % of
# the largest, and `data.to_volume` turns the columns back into slices. The middle slice of each:

# %%
rows, cols = volume.shape[1:]
denoised = {
    p: data.to_volume(model.reconstruct(u, s, vt, p), rows, cols) for p in model.PERCENTAGES
}
for p in model.PERCENTAGES:
    print(f"drop under {p:4g} % of the largest: keep {model.kept(s, p):2d} of {len(s)} values")
labelled = {"truth": truth, "noisy": volume} | {f"drop {p:g}%": v for p, v in denoised.items()}
visualize.slices_figure(labelled, len(volume) // 2)
plt.show()

# %% [markdown]
# At 0.1 % and 1 % nothing is dropped; the picture is the rank-40 reconstruction, already a
# little cleaner than the scan because computing 40 of 48 values left out the 8 weakest
# directions. At 5 % the grain is visibly lower and the skull, the ventricles and the bright
# spots are all there. At 10 % rings appear, echoes of the skull's edge in other slices: nine
# directions must now draw every slice at once. At 30 % only two are left: the head fills in,
# the ventricles are a smudge and the small structures are gone.
#
# ## 6. How close to the truth?
#
# PSNR (peak signal-to-noise ratio, in dB, higher is better) compares each volume with the
# truth through the mean squared error, relative to the truth's range of values; SSIM
# (structural similarity, 1 is identical) compares local patterns of brightness and contrast,
# which tracks what a person sees a little better. The grey line is the noisy scan itself: a
# denoiser is worth having only above it.

# %%
peak = float(np.ptp(truth))  # one range for every figure, so they compare
noisy_psnr, noisy_ssim = model.psnr(truth, volume, peak), model.ssim(truth, volume, peak)
curve = {p: model.psnr(truth, v, peak) for p, v in denoised.items()}
quality = pd.DataFrame(
    {
        "kept": [model.kept(s, p) for p in model.PERCENTAGES],
        "PSNR (dB)": list(curve.values()),
        "SSIM": [model.ssim(truth, v, peak) for v in denoised.values()],
    },
    index=pd.Index(model.PERCENTAGES, name="drop under % of the largest"),
)
visualize.psnr_figure(curve, noisy_psnr)
plt.show()
print(f"noisy input: PSNR {noisy_psnr:.2f} dB, SSIM {noisy_ssim:.3f}")
print(f"PSNR at 5 %: {curve[5.0]:.2f} dB (noisy input: {noisy_psnr:.2f} dB)")
quality.round(3)

# %% [markdown]
# The curve rises, then falls, and the reason is the spectrum. Each direction we drop removes
# its share of the noise and its share of the truth. Below the knee the directions are almost
# pure noise, so dropping them only helps: PSNR climbs to its best near 5 %, about 3 dB above
# the noisy input. Past the knee each dropped direction carries more anatomy than noise: the
# error we add (small structures smoothed away) grows faster than the noise we remove. At 10 %
# the PSNR is back at the noisy input's, and at 30 % it is far below: worse than doing nothing.
# SSIM agrees on the shape, peaking a little later, because a smoother picture looks more like
# the truth's structure even where the details are blurred. The best cut depends on the noise
# level and the anatomy: that is what the Katib Experiment of `kubeflow.ipynb` searches for,
# together with the rank k.
#
# The other reading of the percentages, as a share of the *count* of values: dropping the
# smallest p % of our 40 values gains at most about 1.5 dB over keeping all 40, and never
# loses the detail the book shows going at 30 %.

# %%
for p in model.PERCENTAGES:
    keep = len(s) - round(len(s) * p / 100)
    by_count = data.to_volume((u[:, :keep] * s[:keep]) @ vt[:keep], rows, cols)
    print(
        f"drop {p:4g} %: by count keep {keep:2d}, PSNR {model.psnr(truth, by_count, peak):.2f} dB"
        f" | of the largest keep {model.kept(s, p):2d}, PSNR {curve[p]:.2f} dB"
    )

# %% [markdown]
# ## 7. Serve the basis, denoise a new slice
#
# The basis is reusable: a new slice of the same size and the same head (a second, noisy
# acquisition, say) is denoised by projecting it onto the left singular vectors that are kept,
# U_r U_r^T x (`model.project`). That is what the model server does.
#
# `python -m ct_scans.train` is the script the Katib trials run, and the SparkApplication's
# driver computes the same on Spark: it reads the scan, computes this very SVD, prints the
# metrics as `name=value` lines and writes `basis.npz` (U, s and the slice shape) and
# `metrics.json`. With `--sample` it writes the same noisy phantom as DICOM into its
# `--data-dir` and reads it back, so its PSNR at 5 % must be ours.

# %%
from ct_scans import train

model_dir = work / "model"
metrics = train.main(
    ["--sample", f"--data-dir={work / 'data'}", f"--model-dir={model_dir}", f"--rank={rank}"]
)
print(f"train.py: psnr at 5 % {metrics['psnr']:.4f} dB; this notebook: {curve[5.0]:.4f} dB")
print("model dir:", sorted(p.name for p in model_dir.iterdir()))

# %% [markdown]
# `ct_scans.serve` is a KServe model server: in the cluster the InferenceService runs
# `python -m ct_scans.serve --model_name ct-scans --model_dir /mnt/models`, where KServe's
# storage initializer has put the basis. Here we start the same command as a process of our own,
# with our model folder instead of /mnt/models, on a free port of 127.0.0.1 (this machine only),
# and wait until it says the model is ready.

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


server, url = start_server("ct_scans.serve", "ct-scans", model_dir, work / "server.log")
print(f"ct_scans.serve is process {server.pid}, ready at {url}")

# %% [markdown]
# `sample/request.json` is an Open Inference (V2) request: the middle slice of the phantom with
# a fresh draw of noise (seed 2; the basis was computed from seed 1), sent as INT16 Hounsfield
# units the way DICOM stores them, and `"parameters": {"percent": 5}`. The server answers the
# denoised slice as FP32 and says how many singular values it kept. The same projection in this
# process, with the basis as stored, must give the same pixels (FP32 rounding aside).

# %%
import json

request = json.loads((root / "ct_scans/sample/request.json").read_text())
answer = requests.post(f"{url}/v2/models/ct-scans/infer", json=request)
print("HTTP", answer.status_code)
reply = answer.json()
(output,) = reply["outputs"]
served = np.asarray(output["data"], np.float32).reshape(output["shape"])
print(
    "output",
    output["name"],
    output["datatype"],
    output["shape"],
    "| parameters",
    reply["parameters"],
)

(tensor,) = request["inputs"]
new_slice = np.asarray(tensor["data"], np.float32).reshape(tensor["shape"])
with np.load(model_dir / train.BASIS_FILE) as stored:
    stored_u, stored_s = stored["u"], stored["s"]
percent = request["parameters"]["percent"]
in_process = data.to_volume(
    model.project(stored_u, stored_s, data.to_matrix(new_slice), percent), rows, cols
)
print("served equals in-process:", bool(np.allclose(served, in_process, rtol=1e-5, atol=1e-3)))

from ct_scans.sample import make_request

index = make_request.SLICE_INDEX  # the phantom's slice that request.json carries
middle = truth[index : index + 1]
print(
    f"this slice: PSNR {model.psnr(middle, new_slice, peak):.2f} dB as sent, "
    f"{model.psnr(middle, served, peak):.2f} dB as served"
)
visualize.slices_figure({"sent (new noise)": new_slice, "served": served, "truth": middle}, 0)
plt.show()

# %% [markdown]
# The server never saw this noise, yet the slice comes back cleaner: the basis learned what a
# slice of this head looks like, not what this particular grain was. (It works because the new
# slice is the same anatomy; a basis from one patient says little about another's slices, which
# is why the case computes a basis per scan.)
#
# The server runs until we stop it. We stop it by its process id, with the signal Kubernetes
# sends a pod it deletes: SIGTERM.

# %%
# Copied from mnist.notebooks.walkthrough.stop_server
import signal

server.send_signal(signal.SIGTERM)  # to process server.pid, and to nothing else
code = server.wait(timeout=30)
print(f"process {server.pid} stopped:", "by SIGTERM" if code == -signal.SIGTERM else f"code {code}")

# %% [markdown]
# That is the whole local loop. `kubeflow.ipynb` computes the basis on Spark as a
# SparkApplication, tunes the rank and percentage with a Katib Experiment, runs the pipeline
# that draws these pictures in the Kubeflow Pipelines UI, and creates the InferenceService.
