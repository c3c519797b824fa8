"""The recommender's KFP v2 pipeline, the book's "recommender model update", as champion/challenger.

    python -m recommender.pipeline                  # compiles recommender/manifests/pipeline.yaml
    python -m recommender.pipeline --output FILE    # compiles elsewhere
    python -m recommender.pipeline --image REGISTRY/recommender:TAG --output FILE

The book retrained and republished the model every 30 minutes whatever it scored. Here a run
publishes only a model that is better than the one serving, on the same frozen holdout, and
rolls it out gradually. Its steps:

1. `update-data`: the newest purchase transactions (`data_file`, an export on the models claim
   that your shop refreshes; else the public copy, downloaded once into `data_dir` with its
   sha256 pinned; or the committed sample), and the frozen holdout. The first run of a store
   freezes one (data.split_by_user's test part: about a tenth of every customer's products, as
   (customer, product) pairs) into `<store>/holdout.csv`; every later run reads that same file.
   The training data is the transactions without any holdout pair, so no model ever trains on
   what it is judged on, however often the data is refreshed.
2. `train`: the TrainJob of manifests/trainjob.yaml on `num_nodes` nodes with `epochs`,
   `batch_size` and `learning_rate`, on that training data (recommender.train_distributed with
   --data-file), as imdb_sentiment's train step runs its TrainJob; the chief's model folder
   (model.keras, mappings.json, purchases.npz, metrics.json) becomes the step's Model artifact.
3. `evaluate`: the candidate and the champion (the version `<store>/CHAMPION` names, in
   `<store>/versions/<N>/`) on the frozen holdout: hit rate@10 and NDCG@10 with full ranking
   over every product, leaving out what each customer bought in the training data, by raw id,
   so models trained on different data compare. It returns "publish" when there is no champion
   yet or the candidate's NDCG@10 beats the champion's by more than `min_improvement`, else
   "keep".
4. `publish`, only on "publish": the model becomes version N (one more than the highest in
   `<store>/versions/`, with a VERSION file that serve.py answers with), is rolled out, and
   then `<store>/CHAMPION` says N. The rollout is gradual, by `deployment_mode`:
   - "Standard" (KServe's Standard mode, what this repository targets; manifests/rollout/
     standard/): two InferenceServices, recommender-blue and recommender-green, and an Istio
     VirtualService, recommender, on the Kubeflow gateway that splits the traffic between their
     predictor Services by weight. The new version goes to the slot that is not live, and once it
     is Ready the weights move to it in `traffic_steps` (10, 50, 100 percent), `step_seconds`
     apart. The old slot keeps its model at weight 0, so rolling back is one weight change.
   - "Knative" (serverless; manifests/rollout/knative/): the one InferenceService `recommender`
     gets the new model with `canaryTrafficPercent` at each step below 100 (Knative keeps the
     previous revision for the rest of the traffic), and the field is removed at the end, which
     promotes the new revision to all of it.
   The first version goes straight to 100%: there is nothing to split with.

On a cluster (a step's pod sees KUBERNETES_SERVICE_HOST) train creates the TrainJob and publish
creates the InferenceServices and the VirtualService in `namespace` ("" is the run's own) and
waits for them. On a laptop the same pipeline runs with `kfp.local.SubprocessRunner(
use_venv=False)` (recommender/tests/test_pipeline.py) from the repository root: the train step
hands the very same TrainJob to the repository's test harness (tests/harness), which runs its
nodes as processes on 127.0.0.1, and publish writes what it would apply, stage by stage, into its
`rollout` artifact. `store` is then any folder (`~` is expanded; `/mnt/pvc/store` on the claim
by default; case.toml's demo arguments use one in ~/.cache).

`schedule(client)` (below) makes the recurring run the book had: every 30 minutes, at most one at
a time, no catching up on missed runs; the kubeflow notebook calls it.

Every component runs in the case image, which holds this package, its manifests and everything it
imports, so components import inside their bodies, set `install_kfp_package=False` and install
nothing. The image is a compile-time setting (`--image`, or RECOMMENDER_IMAGE, else the image
manifests/kustomization.yaml names); the TrainJob (`training_image`) and the InferenceServices
(`serving_image`) take it as a run parameter whose default is that same image.

What the cluster needs; `kubectl apply -k recommender/manifests` creates it:
- The `recommender-tensorflow-distributed` TrainingRuntime and the claim `recommender-models`
  (manifests/pvc.yaml), which holds the data, the store and the TrainJobs' models; every step
  mounts it at /mnt/pvc (kfp-kubernetes' `mount_pvc`, which makes the compiled YAML two
  documents: the pipeline, then its Kubernetes platform spec).
- RBAC (manifests/rbac.yaml): the run's ServiceAccount may create and read TrainJobs,
  InferenceServices and Istio VirtualServices in the namespace.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import argparse
import os
import subprocess
import sys
from pathlib import Path

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

# The image manifests/kustomization.yaml names (and case.toml); RECOMMENDER_IMAGE replaces it
# when this module is imported, which is when KFP fixes each component's image.
DEFAULT_IMAGE = "ghcr.io/kubeflow-case-studies/recommender:0.1.0"
IMAGE_VARIABLE = "RECOMMENDER_IMAGE"
IMAGE = os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE
COMPILED = Path(__file__).resolve().parent / "manifests" / "pipeline.yaml"
# The claim the TrainJob's nodes write the model to (manifests/trainjob.yaml), mounted where they
# mount it; the store lives on it too.
MODELS_PVC = "recommender-models"
PVC_MOUNT = "/mnt/pvc"
STORE = f"{PVC_MOUNT}/store"
# The recurring run (schedule): the book's every 30 minutes.
EXPERIMENT = "recommender-model-update"
RECURRING_RUN = "recommender-model-update"
EVERY_MINUTES = 30


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def update_data(
    sample: bool,
    data_file: str,
    data_dir: str,
    store: str,
    holdout_seed: int,
    transactions: Output[Dataset],
    holdout: Output[Dataset],
):
    """The newest transactions without the frozen holdout's pairs, and that holdout; the first
    run of a store freezes it. Both in the book's `customerId,products` format."""
    import csv
    import io
    import os
    from pathlib import Path

    from recommender import data

    if data_file:  # the shop's refreshed export
        source = Path(data_file)
    elif sample:
        source = data.SAMPLE
    else:  # the public copy: downloaded once, its sha256 recorded and checked ever after
        dest = Path(data_dir).expanduser() / data.TRANSACTIONS_FILE
        source = data.download(data.TRANSACTIONS_URL, dest, None)
    text = source.read_text(encoding="utf-8")
    inter = data.parse_transactions(text, str(source))  # checks the format, line by line

    frozen = Path(store).expanduser() / "holdout.csv"
    if frozen.is_file():
        status = "frozen earlier"
    else:  # the first run of this store: freeze the test part of RecBole's split
        _, _, test = data.split_by_user(inter, holdout_seed)
        baskets: dict[str, list[str]] = {}
        for u, i in zip(test.users, test.items, strict=True):
            baskets.setdefault(inter.user_ids[u], []).append(inter.item_ids[i])
        lines = ["customerId,products"]
        lines += [f"{customer},{'|'.join(products)}" for customer, products in baskets.items()]
        frozen.parent.mkdir(parents=True, exist_ok=True)
        partial = frozen.with_name(f".{frozen.name}.{os.getpid()}")
        partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
        partial.replace(frozen)  # a reader never sees half a holdout
        status = "frozen by this run"
    held = data.read_transactions(frozen)
    pairs = {
        (held.user_ids[u], held.item_ids[i]) for u, i in zip(held.users, held.items, strict=True)
    }

    # The transactions row by row, without the holdout's pairs (every purchase of them).
    out = ["customerId,products"]
    rows = csv.reader(io.StringIO(text))
    next(rows)  # the header, checked by parse_transactions
    for row in rows:
        if not row:
            continue
        customer = row[0].strip()
        kept = [p.strip() for p in row[1].split("|") if (customer, p.strip()) not in pairs]
        if kept:
            out.append(f"{customer},{'|'.join(kept)}")
    Path(transactions.path).write_text("\n".join(out) + "\n", encoding="utf-8")
    Path(holdout.path).write_bytes(frozen.read_bytes())
    fit = data.read_transactions(transactions.path)
    transactions.metadata.update(
        {"source": str(source), "customers": fit.n_users, "products": fit.n_items}
    )
    transactions.metadata["purchases"] = len(fit)
    holdout.metadata.update({"status": status, "customers": held.n_users, "pairs": len(pairs)})
    print(
        f"customers={fit.n_users} products={fit.n_items} training_pairs={len(fit)} "
        f"holdout_pairs={len(pairs)} ({status}: {frozen})",
        flush=True,
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    transactions: Input[Dataset],
    num_nodes: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    namespace: str,
    training_image: str,
    timeout: int,
    pvc_mount: str,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Run the TrainJob on the training data on num_nodes nodes; the model folder its chief
    wrote becomes this step's Model artifact.

    The TrainJob's nodes mount the models claim at /mnt/pvc; on a cluster this step mounts it at
    pvc_mount to put the data there and copy the model out."""
    import json
    import os
    import secrets
    import shutil
    import time
    from pathlib import Path

    import yaml

    import recommender

    path = Path(recommender.__file__).resolve().parent / "manifests" / "trainjob.yaml"
    job = yaml.safe_load(path.read_text())
    cluster = "KUBERNETES_SERVICE_HOST" in os.environ

    def set_flag(args: list, flag: str) -> list:
        """args with `--name=value` in place of an earlier `--name=...`, or added at the end."""
        name = flag.split("=", 1)[0] + "="
        if not any(a.startswith(name) for a in args):
            return [*args, flag]
        return [flag if a.startswith(name) else a for a in args]

    # A fresh name per run (a TrainJob's name is taken until it is deleted), and a folder of its
    # own on the shared volume for its data, model and checkpoints.
    name = job["metadata"]["name"] = job["metadata"]["name"] + "-" + secrets.token_hex(3)
    folder = f"pipeline/{name}"  # on the claim
    trainer = job["spec"]["trainer"]
    args = trainer["args"]
    for flag in [
        f"--data-file=/mnt/pvc/{folder}/transactions.csv",
        f"--model-dir=/mnt/pvc/{folder}/model",
        f"--checkpoint-dir=/mnt/pvc/{folder}/checkpoints",
        f"--epochs={epochs}",
        f"--batch-size={batch_size}",
        f"--learning-rate={learning_rate}",
    ]:
        args = set_flag(args, flag)
    trainer["args"] = args
    trainer["image"] = training_image
    trainer["numNodes"] = num_nodes
    # The runtime's entry point needs the node count to write TF_CONFIG.
    trainer["env"] = [e for e in trainer.get("env", []) if e["name"] != "TF_NUM_NODES"]
    trainer["env"].append({"name": "TF_NUM_NODES", "value": str(num_nodes)})
    print(f"TrainJob {name}: {num_nodes} nodes, args {' '.join(args)}", flush=True)

    if cluster:
        from kubernetes import client, config

        claim = Path(pvc_mount)  # this pod mounts the claim the nodes mount at /mnt/pvc
        (claim / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(transactions.path, claim / folder / "transactions.csv")
        config.load_incluster_config()  # the run's ServiceAccount may create TrainJobs
        if not namespace:
            namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()
        where = ("trainer.kubeflow.org", "v1alpha1", namespace.strip(), "trainjobs")
        api = client.CustomObjectsApi()
        api.create_namespaced_custom_object(*where, job)
        deadline = time.monotonic() + timeout
        while True:
            status = api.get_namespaced_custom_object(*where, name).get("status", {})
            true = {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}
            if true & {"Complete", "Failed"}:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"TrainJob {name} did not finish in {timeout} s")
            time.sleep(15)
        if "Complete" not in true:
            raise RuntimeError(f"TrainJob {name} failed: {status.get('conditions')}")
        written = claim / folder / "model"
    else:
        from tests.harness import jobs, manifests
        from tests.harness.containers import PathMap, mount_volumes
        from tests.harness.trainer import runtimes_beside

        manifests.check(job)
        workdir = Path(model.path).parent / "trainjob"
        paths = PathMap(workdir)
        # The claim's host folder, as the harness will mount it for the nodes, to put the data in.
        patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
        pod = patch["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
        mount_volumes(pod, pod["containers"][0], paths)
        data_file = paths.host(f"/mnt/pvc/{folder}/transactions.csv")
        data_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(transactions.path, data_file)
        result = jobs.run_job(
            job, workdir=workdir, timeout=timeout, paths=paths, runtimes=runtimes_beside(path)
        )
        print(result.summary(), flush=True)
        result.raise_for_failure()
        written = paths.host(f"/mnt/pvc/{folder}/model")

    shutil.copytree(written, model.path, dirs_exist_ok=True)
    final = json.loads((written / "metrics.json").read_text())
    model.metadata.update({"framework": "keras", "trainjob": name, "nodes": num_nodes})
    for key, value in final.items():
        metrics.log_metric(key, value)
    print(f"TrainJob {name}: Complete; model in {model.path}", flush=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    transactions: Input[Dataset],
    holdout: Input[Dataset],
    model: Input[Model],
    store: str,
    min_improvement: float,
    metrics: Output[Metrics],
) -> str:
    """The candidate and the champion on the frozen holdout; "publish" or "keep".

    Returns the decision as the task's single output: kfp.local's dsl.If reads only an output
    named "Output"."""
    from pathlib import Path

    import keras
    import numpy as np

    from recommender import data
    from recommender.metrics import evaluate as rank
    from recommender.model import KERAS_FILE, ItemScorer

    fit = data.read_transactions(transactions.path)
    held = data.read_transactions(holdout.path)
    # One id space for both: the training data's customers and products, then any the holdout
    # has and the training data has not (a model cannot rank those: it scores them -inf).
    fit_users, fit_items = set(fit.user_ids), set(fit.item_ids)
    users = list(fit.user_ids) + [u for u in held.user_ids if u not in fit_users]
    items = list(fit.item_ids) + [i for i in held.item_ids if i not in fit_items]
    user_index = {u: n for n, u in enumerate(users)}
    item_index = {i: n for n, i in enumerate(items)}

    def remap(inter: "data.Interactions") -> "data.Interactions":
        return data.Interactions(
            np.array([user_index[inter.user_ids[u]] for u in inter.users], dtype=np.int64),
            np.array([item_index[inter.item_ids[i]] for i in inter.items], dtype=np.int64),
            inter.values,
            users,
            items,
        )

    seen, test = remap(fit), remap(held)
    # A customer a model does not know gets the most bought products, as serve.py answers.
    bought = np.bincount(seen.items, minlength=len(items)).astype(np.float64)

    def scores_of(model_dir: Path):
        """score_fn for metrics.evaluate: the model's scores in the common id space."""
        scorer = ItemScorer(keras.saving.load_model(model_dir / KERAS_FILE))
        mapping = data.IdMapping.load(model_dir)
        own_user = np.array([mapping.user_index.get(u, -1) for u in users])
        own_item = np.array([mapping.item_index.get(i, -1) for i in items])
        known = own_item >= 0

        def score(batch: np.ndarray) -> np.ndarray:
            out = np.full((len(batch), len(items)), -np.inf)
            mine = own_user[batch]
            rows = mine >= 0
            if rows.any():
                out[np.ix_(rows, known)] = scorer(mine[rows])[:, own_item[known]]
            out[~rows] = bought
            return out

        return score

    figures = {}
    candidate = rank(scores_of(Path(model.path)), seen, test, 10)
    figures["candidate"] = candidate
    pointer = Path(store).expanduser() / "CHAMPION"
    champion_version = pointer.read_text().strip() if pointer.is_file() else ""
    if champion_version:
        champion_dir = Path(store).expanduser() / "versions" / champion_version
        figures["champion"] = rank(scores_of(champion_dir), seen, test, 10)
    for who, values in figures.items():
        for name, value in values.items():
            metrics.log_metric(f"{who}_{name.replace('@', '_at_')}", value)
    metrics.log_metric("champion_version", int(champion_version or 0))

    if not champion_version:
        decision, why = "publish", "no champion yet"
    else:
        lead = candidate["ndcg@10"] - figures["champion"]["ndcg@10"]
        decision = "publish" if lead > min_improvement else "keep"
        why = f"NDCG@10 {lead:+.4f} against version {champion_version} (needs > {min_improvement})"
    for who, values in figures.items():
        print(" ".join(f"{who}_{k.replace('@', '_at_')}={v}" for k, v in values.items()))
    print(f"decision={decision}: {why}", flush=True)
    return decision


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def publish(
    model: Input[Model],
    store: str,
    deployment_mode: str,
    traffic_steps: list,
    step_seconds: int,
    namespace: str,
    models_pvc: str,
    pvc_mount: str,
    serving_image: str,
    timeout: int,
    rollout: Output[Artifact],
) -> int:
    """The model as the store's next version, rolled out gradually; returns the version."""
    # Self-contained: at run time KFP loads only this function's source.
    import copy
    import os
    import shutil
    import time
    from pathlib import Path

    import yaml

    import recommender

    if deployment_mode not in ("Standard", "Knative"):
        raise ValueError(f"deployment_mode must be Standard or Knative, got {deployment_mode!r}")
    steps = [int(s) for s in traffic_steps]
    if (
        not steps
        or steps[-1] != 100
        or any(not 0 < s <= 100 for s in steps)
        or steps != sorted(steps)
    ):
        raise ValueError(f"traffic_steps must rise to 100 in percent, got {traffic_steps}")

    # The next version: one more than any the store holds (a failed rollout's folder included).
    versions = Path(store).expanduser() / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in versions.iterdir() if p.name.isdigit()]
    version = max(taken, default=0) + 1
    pointer = Path(store).expanduser() / "CHAMPION"
    champion = pointer.read_text().strip() if pointer.is_file() else ""
    partial = versions / f".{version}.{os.getpid()}"
    shutil.copytree(model.path, partial)
    (partial / "VERSION").write_text(f"{version}\n")  # what serve.py answers with
    partial.replace(versions / str(version))
    folder = versions / str(version)
    # KServe reads the model from the claim (pvc://<claim>/<path>); a laptop store is a folder.
    try:
        uri = f"pvc://{models_pvc}/{folder.relative_to(pvc_mount)}"
    except ValueError:
        uri = str(folder)

    manifests = Path(recommender.__file__).resolve().parent / "manifests" / "rollout"

    def load(name: str) -> dict:
        return yaml.safe_load((manifests / name).read_text())

    def with_model(isvc: dict) -> dict:
        isvc = copy.deepcopy(isvc)
        container = isvc["spec"]["predictor"]["containers"][0]
        container["image"] = serving_image
        container["env"] = [
            {"name": "STORAGE_URI", "value": uri} if e["name"] == "STORAGE_URI" else e
            for e in container["env"]
        ]
        return isvc

    # The stages, in order: the objects each applies, and whether the traffic then stays so for
    # step_seconds before the next (a share of it on the new version).
    stages: list[tuple[list[dict], bool]] = []
    if deployment_mode == "Standard":
        route = load("standard/virtualservice.yaml")
        slots = {s: load(f"standard/inferenceservice-{s}.yaml") for s in ("blue", "green")}
        hosts = {s: f"{isvc['metadata']['name']}-predictor" for s, isvc in slots.items()}
        current = None  # the route as it stands
        if "KUBERNETES_SERVICE_HOST" in os.environ:
            from kubernetes import client, config
            from kubernetes.client.rest import ApiException

            config.load_incluster_config()
            if not namespace:
                namespace = Path(
                    "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
                ).read_text()
            try:
                current = client.CustomObjectsApi().get_namespaced_custom_object(
                    "networking.istio.io",
                    "v1",
                    namespace.strip(),
                    "virtualservices",
                    route["metadata"]["name"],
                )
            except ApiException as err:
                if err.status != 404:
                    raise
        else:  # a laptop: the route the previous local run left
            kept = Path(store).expanduser() / "rollout" / "virtualservice.yaml"
            current = yaml.safe_load(kept.read_text()) if kept.is_file() else None
        live = None  # the slot serving the champion
        if current and champion:
            routes = current["spec"]["http"][0]["route"]
            weights = {r["destination"]["host"]: r.get("weight", 0) for r in routes}
            live = max(hosts, key=lambda s: weights.get(hosts[s], 0))
        target = "green" if live == "blue" else "blue"

        def routed(percent: int) -> dict:
            """The route with `percent` on the target slot and the rest on the live one."""
            shares = {target: percent, live: 100 - percent} if live else {target: 100}
            r = copy.deepcopy(route)
            for destination in r["spec"]["http"][0]["route"]:
                slot = next(s for s, h in hosts.items() if h == destination["destination"]["host"])
                destination["weight"] = shares.get(slot, 0)
            return r

        stages.append(([with_model(slots[target])], False))  # waits until Ready
        shares = steps if live else [100]
        stages += [([routed(p)], p < 100) for p in shares]
    else:
        isvc = with_model(load("knative/inferenceservice.yaml"))
        isvc["spec"]["predictor"].pop("canaryTrafficPercent", None)
        if champion:
            for percent in steps[:-1]:
                canary = copy.deepcopy(isvc)
                canary["spec"]["predictor"]["canaryTrafficPercent"] = percent
                stages.append(([canary], True))
        stages.append(([isvc], False))  # without canaryTrafficPercent the latest takes it all

    documents = [doc for stage, _ in stages for doc in stage]
    Path(rollout.path).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    rollout.metadata.update(
        {"version": version, "previous": champion, "mode": deployment_mode, "stages": len(stages)}
    )

    if "KUBERNETES_SERVICE_HOST" in os.environ:
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        config.load_incluster_config()  # the run's ServiceAccount (RBAC: manifests/rbac.yaml)
        if not namespace:
            namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()
        namespace = namespace.strip()
        api = client.CustomObjectsApi()
        kinds = {
            "InferenceService": ("serving.kserve.io", "v1beta1", "inferenceservices"),
            "VirtualService": ("networking.istio.io", "v1", "virtualservices"),
        }

        def apply(manifest: dict) -> None:
            group, api_version, plural = kinds[manifest["kind"]]
            where = (group, api_version, namespace, plural)
            name = manifest["metadata"]["name"]
            try:
                api.create_namespaced_custom_object(*where, manifest)
                action = "created"
            except ApiException as err:
                if err.status != 409:
                    raise
                current = api.get_namespaced_custom_object(*where, name)
                manifest = copy.deepcopy(manifest)
                manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                api.replace_namespaced_custom_object(*where, name, manifest)
                action = "replaced"
            print(f"{action} {manifest['kind']} {namespace}/{name}", flush=True)

        def wait_ready(name: str) -> None:
            where = ("serving.kserve.io", "v1beta1", namespace, "inferenceservices")
            deadline = time.monotonic() + timeout
            while True:
                isvc = api.get_namespaced_custom_object(*where, name)
                status = isvc.get("status", {})
                current = status.get("observedGeneration", 0) >= isvc["metadata"].get(
                    "generation", 0
                )
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", [])
                )
                if current and ready:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"InferenceService {name} not Ready in {timeout} s")
                time.sleep(10)

        for stage, pause in stages:
            for manifest in stage:
                apply(manifest)
                if manifest["kind"] == "InferenceService":
                    wait_ready(manifest["metadata"]["name"])
            if pause:
                time.sleep(step_seconds)  # the new version serves this share for a while
    else:  # a laptop: keep the route as the cluster would hold it now
        if deployment_mode == "Standard":
            kept = Path(store).expanduser() / "rollout" / "virtualservice.yaml"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(yaml.safe_dump(stages[-1][0][-1], sort_keys=False))
        print(f"rendered {len(documents)} objects in {len(stages)} stages (no cluster)")

    # Only now is it the champion: a rollout that failed above leaves the old one named.
    partial_pointer = pointer.with_name(f".{pointer.name}.{os.getpid()}")
    partial_pointer.write_text(f"{version}\n")
    partial_pointer.replace(pointer)
    print(f"published version {version} (previous: {champion or 'none'}) at {uri}", flush=True)
    return version


@dsl.pipeline(
    name="recommender-model-update",
    description="Refresh the purchase data, retrain the recommender, compare it with the serving "
    "model on a frozen holdout and roll it out gradually only when it is better.",
)
def recommender_pipeline(
    sample: bool = False,
    data_file: str = "",
    data_dir: str = f"{PVC_MOUNT}/data",
    store: str = STORE,
    holdout_seed: int = 42,
    num_nodes: int = 2,
    epochs: int = 20,
    batch_size: int = 256,
    learning_rate: float = 0.001,
    min_improvement: float = 0.0,
    deployment_mode: str = "Standard",
    traffic_steps: list = [10, 50, 100],  # noqa: B006 (KFP reads the default; never mutated)
    step_seconds: int = 300,
    namespace: str = "",
    models_pvc: str = MODELS_PVC,
    training_image: str = IMAGE,
    serving_image: str = IMAGE,
    timeout: int = 7200,
):
    """Defaults: the public transactions (or `data_file`), two nodes, trainjob.yaml's training;
    namespace "" means the run's own; timeout is how long train and publish wait for their
    resources, in seconds."""
    data = update_data(
        sample=sample,
        data_file=data_file,
        data_dir=data_dir,
        store=store,
        holdout_seed=holdout_seed,
    )
    data.set_cpu_request("500m").set_memory_request("1Gi").set_memory_limit("2Gi")
    data.set_caching_options(False)  # it reads the store and the newest data

    trained = train(
        transactions=data.outputs["transactions"],
        num_nodes=num_nodes,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        namespace=namespace,
        training_image=training_image,
        timeout=timeout,
        pvc_mount=PVC_MOUNT,
    )
    trained.set_cpu_request("100m").set_memory_request("256Mi").set_memory_limit("1Gi")
    trained.set_caching_options(False)

    scores = evaluate(
        transactions=data.outputs["transactions"],
        holdout=data.outputs["holdout"],
        model=trained.outputs["model"],
        store=store,
        min_improvement=min_improvement,
    )
    scores.set_cpu_request("1").set_memory_request("2Gi").set_memory_limit("4Gi")
    scores.set_caching_options(False)  # the champion may have changed since

    with dsl.If(scores.outputs["Output"] == "publish", name="better-than-champion"):
        published = publish(
            model=trained.outputs["model"],
            store=store,
            deployment_mode=deployment_mode,
            traffic_steps=traffic_steps,
            step_seconds=step_seconds,
            namespace=namespace,
            models_pvc=models_pvc,
            pvc_mount=PVC_MOUNT,
            serving_image=serving_image,
            timeout=timeout,
        )
        published.set_cpu_request("100m").set_memory_request("256Mi").set_memory_limit("512Mi")
        published.set_caching_options(False)  # it acts on the store and the cluster

    for task in (data, trained, scores, published):
        kubernetes.mount_pvc(task, pvc_name=models_pvc, mount_path=PVC_MOUNT)


def cron_every(minutes: int) -> str:
    """The 6-field cron (seconds first: robfig/cron, which KFP's scheduler reads) of a run every
    `minutes` minutes on the hour's boundaries, e.g. 30 -> "0 */30 * * * *"."""
    if not 1 <= minutes <= 60 or 60 % minutes:
        raise ValueError(f"every_minutes must divide 60 (1, 2, ..., 30, 60), got {minutes}")
    return "0 0 * * * *" if minutes == 60 else f"0 */{minutes} * * * *"


def schedule(
    client,
    *,
    experiment: str = EXPERIMENT,
    namespace: str | None = None,
    arguments: dict | None = None,
    every_minutes: int = EVERY_MINUTES,
    name: str = RECURRING_RUN,
    package: Path = COMPILED,
    service_account: str | None = None,
):
    """Create the recurring run with a `kfp.Client`: the compiled pipeline every `every_minutes`
    minutes, at most one run at a time, without catching up on runs missed while it was paused
    (the book's schedule). Returns what `client.create_recurring_run` returns."""
    found = client.create_experiment(experiment, namespace=namespace)  # or the existing one
    return client.create_recurring_run(
        experiment_id=found.experiment_id,
        job_name=name,
        description=f"retrain every {every_minutes} minutes; publish only a better model",
        cron_expression=cron_every(every_minutes),
        max_concurrency=1,
        no_catchup=True,
        params=dict(arguments or {}),
        pipeline_package_path=str(package),
        service_account=service_account,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compile the recommender model-update pipeline.")
    parser.add_argument(
        "--output",
        type=Path,
        default=COMPILED,
        help="where the YAML goes (default: recommender/manifests/pipeline.yaml)",
    )
    parser.add_argument(
        "--image",
        default=IMAGE,
        help=f"the image every step runs in and the default training_image and serving_image "
        f"(default: ${IMAGE_VARIABLE}, else {DEFAULT_IMAGE})",
    )
    args = parser.parse_args(argv)
    if not args.image.strip():
        parser.error("--image needs an image name, e.g. registry.example.com/recommender:0.1.0")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.image != IMAGE:
        # The components took their image when this module was imported: compile in a fresh
        # interpreter that imports it with the other one.
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, IMAGE_VARIABLE: args.image, "PYTHONPATH": path}
        command = [sys.executable, "-m", "recommender.pipeline", "--output", str(args.output)]
        subprocess.run(command, env=env, check=True)
        return
    compiler.Compiler().compile(recommender_pipeline, str(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
