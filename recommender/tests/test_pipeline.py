"""The recommender's model-update pipeline: its committed YAML, three local runs into one store
(champion/challenger), the rollout it renders, the cluster side of publish against a fake API
server, and schedule() against a fake kfp.Client.

    .venv/bin/python -m pytest recommender/tests/test_pipeline.py -q

Three local runs (kfp.local SubprocessRunner, one subprocess per task; about 45 s of CPU, 60 s
on an idle machine here) into one fresh store, with case.toml's [smoke.pipeline] arguments on
the sample and one node:
1. the first freezes the holdout and, with no champion, publishes version 1;
2. `worse` (1 epoch at a tiny step) trains a candidate below the champion: nothing is published
   and version 1 keeps serving;
3. `better` (4 epochs) beats it: version 2 is published and rolled out to the other slot in
   steps of 10, 50 and 100 percent.
After each run the model the store names is loaded with serve.py's server, which must answer
with that version.
"""

from pathlib import Path

import kubernetes
import pytest
import yaml
from kfp import dsl
from kubernetes.client.rest import ApiException

from recommender import data, pipeline
from recommender.serve import RecommenderServer
from tests.harness import cases, houserules, manifests
from tests.harness.pipelines import LocalRun, compiled_drift, find_pipeline, run_local

# The resource requests are for the cluster; kfp.local says it ignores them, once per task.
pytestmark = pytest.mark.filterwarnings("ignore:Task .* no effect in the current local runner")

CASE = Path(pipeline.__file__).parent
CASE_TOML = cases.load_case(CASE)
SMOKE = CASE_TOML.smoke["pipeline"]
ROLLOUT = CASE / "manifests" / "rollout"
STEPS = ["evaluate", "publish", "train", "update-data"]
TRAINJOB = manifests.load(CASE / "manifests" / "trainjob.yaml")[0]


def read(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def served_version(store: Path) -> str:
    """The version the store names, as serve.py's server answers with it."""
    champion = (store / "CHAMPION").read_text().strip()
    server = RecommenderServer("recommender", store / "versions" / champion)
    server.load()
    assert server.version == champion, (server.version, champion)
    return server.version


class Runs:
    """The three runs, and the store's champion after each (it changes as they go)."""

    def __init__(self, workdir: Path) -> None:
        self.store = workdir / "store"
        self.runs: dict[str, LocalRun] = {}
        self.served: dict[str, str] = {}
        self.holdouts: dict[str, bytes] = {}
        self.versions: dict[str, list[str]] = {}
        for name, extra in (("first", {}), ("worse", SMOKE["worse"]), ("better", SMOKE["better"])):
            arguments = SMOKE["arguments"] | extra | {"store": str(self.store)}
            self.runs[name] = run_local(
                pipeline.recommender_pipeline, arguments, workdir=workdir / name
            )
            self.served[name] = served_version(self.store)
            self.holdouts[name] = (self.store / "holdout.csv").read_bytes()
            self.versions[name] = sorted(p.name for p in (self.store / "versions").iterdir())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    with pytest.MonkeyPatch.context() as mp:
        # In a CI pod the steps would create real TrainJobs and InferenceServices.
        mp.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        return Runs(tmp_path_factory.mktemp("pipeline"))


def test_the_first_run_freezes_the_holdout_and_publishes_version_1(runs: Runs) -> None:
    run = runs.runs["first"]
    assert run.tasks() == STEPS
    assert run.metadata("update-data", "holdout")["status"] == "frozen by this run"
    assert run.parameters("evaluate")["Output"] == "publish"  # no champion yet
    scores = run.metadata("evaluate", "metrics")
    assert scores["champion_version"] == 0 and "champion_ndcg_at_10" not in scores, scores
    assert scores["candidate_ndcg_at_10"] >= CASE_TOML.floor("first_ndcg_at_10", "pipeline")
    assert run.parameters("publish")["Output"] == 1
    assert runs.served["first"] == "1"
    assert (runs.store / "versions" / "1" / "VERSION").read_text() == "1\n"


def pairs(inter: data.Interactions) -> set[tuple[str, str]]:
    """The (customer, product) pairs of interactions, by raw id."""
    return {
        (inter.user_ids[u], inter.item_ids[i])
        for u, i in zip(inter.users, inter.items, strict=True)
    }


def test_every_run_evaluates_on_the_same_frozen_holdout_it_never_trains_on(runs: Runs) -> None:
    assert len(set(runs.holdouts.values())) == 1
    for name in ("worse", "better"):
        run = runs.runs[name]
        assert run.metadata("update-data", "holdout")["status"] == "frozen earlier"
        assert run.artifact("update-data", "holdout").read_bytes() == runs.holdouts["first"]
    held = data.read_transactions(runs.store / "holdout.csv")
    fit = data.read_transactions(runs.runs["better"].artifact("update-data", "transactions"))
    assert len(pairs(held)) > 0 and not pairs(held) & pairs(fit)
    everything = data.load_sample()
    assert pairs(held) | pairs(fit) == pairs(everything)  # the rest of the sample trains
    # Every holdout customer keeps purchases to train on (split_by_user keeps one at least).
    assert set(held.user_ids) <= set(fit.user_ids)


def test_a_worse_candidate_leaves_version_1_serving(runs: Runs) -> None:
    run = runs.runs["worse"]
    assert run.tasks() == ["evaluate", "train", "update-data"]  # publish held back
    assert run.parameters("evaluate")["Output"] == "keep"
    scores = run.metadata("evaluate", "metrics")
    assert scores["champion_version"] == 1
    assert scores["candidate_ndcg_at_10"] < scores["champion_ndcg_at_10"], scores
    # The champion scored what it scored when it was the candidate: the same holdout, the same
    # products left out (the sample does not change between runs).
    first = runs.runs["first"].metadata("evaluate", "metrics")
    assert scores["champion_ndcg_at_10"] == pytest.approx(first["candidate_ndcg_at_10"])
    assert runs.served["worse"] == "1"
    assert runs.versions["worse"] == ["1"]  # nothing published


def test_a_better_candidate_becomes_version_2(runs: Runs) -> None:
    run = runs.runs["better"]
    assert run.tasks() == STEPS
    assert run.parameters("evaluate")["Output"] == "publish"
    scores = run.metadata("evaluate", "metrics")
    assert scores["champion_version"] == 1
    assert scores["candidate_ndcg_at_10"] >= CASE_TOML.floor("better_ndcg_at_10", "pipeline")
    assert scores["candidate_ndcg_at_10"] > scores["champion_ndcg_at_10"], scores
    assert run.parameters("publish")["Output"] == 2
    assert runs.served["better"] == "2"
    # The train step's TrainJob trained on the step's data with the run's flags.
    command = run.artifact("train", "model").parent / "trainjob" / "logs" / "node-0.log"
    argv = command.read_text().splitlines()[0].split("recommender.train_distributed", 1)[1]
    assert f"--epochs={SMOKE['better']['epochs']}" in argv.split() and "--data-file=" in argv


def isvc_model(isvc: dict) -> str:
    (container,) = isvc["spec"]["predictor"]["containers"]
    return next(e["value"] for e in container["env"] if e["name"] == "STORAGE_URI")


def weights(route: dict) -> dict[str, int]:
    return {r["destination"]["host"]: r["weight"] for r in route["spec"]["http"][0]["route"]}


def test_the_rollouts_are_gradual_and_valid(runs: Runs) -> None:
    first = read(runs.runs["first"].artifact("publish", "rollout"))
    # Version 1 goes to the blue slot and takes all the traffic at once.
    assert [d["kind"] for d in first] == ["InferenceService", "VirtualService"]
    assert first[0]["metadata"]["name"] == "recommender-blue"
    assert isvc_model(first[0]) == str(runs.store / "versions" / "1")
    assert weights(first[1]) == {
        "recommender-blue-predictor": 100,
        "recommender-green-predictor": 0,
    }

    second = read(runs.runs["better"].artifact("publish", "rollout"))
    # Version 2 goes to the idle green slot, then the traffic moves in steps.
    assert [d["kind"] for d in second] == ["InferenceService"] + ["VirtualService"] * 3
    assert second[0]["metadata"]["name"] == "recommender-green"
    assert isvc_model(second[0]) == str(runs.store / "versions" / "2")
    shares = [weights(route)["recommender-green-predictor"] for route in second[1:]]
    assert shares == [10, 50, 100]
    assert all(sum(weights(route).values()) == 100 for route in second[1:])
    image = CASE_TOML.image
    for doc in first + second:
        assert manifests.validate(doc) == [], doc["metadata"]["name"]
        assert houserules.check(doc, image) == [], doc["metadata"]["name"]


def test_the_rollout_manifests_are_the_served_one_under_two_names() -> None:
    """Blue and green are inferenceservice.yaml's server but for name, label and model."""
    base = manifests.load(CASE / "manifests" / "inferenceservice.yaml")[0]
    for slot in ("blue", "green"):
        isvc = manifests.load(ROLLOUT / "standard" / f"inferenceservice-{slot}.yaml")[0]
        assert isvc["metadata"].pop("name") == f"recommender-{slot}"
        assert isvc["metadata"]["labels"].pop("app.kubernetes.io/component") == "rollout-slot"
        assert isvc_model(isvc) == "pvc://recommender-models/store/versions/1"
        for doc in (isvc, base):
            doc["metadata"].pop("name", None)
            doc["spec"]["predictor"]["containers"][0]["env"] = "<the model>"
        assert isvc == base
    knative = manifests.load(ROLLOUT / "knative" / "inferenceservice.yaml")[0]
    assert knative["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}
    assert knative["spec"]["predictor"]["canaryTrafficPercent"] == 10


@pytest.mark.parametrize("path", sorted(ROLLOUT.rglob("*.yaml")) + [CASE / "manifests/rbac.yaml"])
def test_rollout_and_rbac_manifests_are_valid_and_keep_the_house_rules(path: Path) -> None:
    assert manifests.validate_file(path) == []
    assert houserules.check_file(path, CASE_TOML.image, CASE) == []


def test_the_pipelines_role_allows_what_its_steps_do() -> None:
    role = manifests.load(CASE / "manifests" / "rbac.yaml")[0]
    allowed = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = [("trainer.kubeflow.org", "trainjobs", v) for v in ("create", "get")]
    needed += [("serving.kserve.io", "inferenceservices", v) for v in ("create", "get", "update")]
    needed += [("networking.istio.io", "virtualservices", v) for v in ("create", "get", "update")]
    assert set(needed) <= allowed


def publish_into(store: Path, tmp_path: Path, mode: str, version: str) -> tuple[list[dict], int]:
    """Call the publish component as its pod would, with a champion `version` in the store."""
    model = tmp_path / "candidate"
    model.mkdir(exist_ok=True)
    (model / "model.keras").write_text("weights")
    if version:
        (store / "versions" / version).mkdir(parents=True)
        (store / "CHAMPION").write_text(version + "\n")
    rollout = dsl.Artifact(name="rollout", uri=str(tmp_path / f"rollout-{mode}.yaml"))
    published = pipeline.publish.python_func(
        model=dsl.Model(name="model", uri=str(model)),
        store=str(store),
        deployment_mode=mode,
        traffic_steps=[10, 50, 100],
        step_seconds=0,
        namespace="team-a",
        models_pvc=pipeline.MODELS_PVC,
        pvc_mount=str(tmp_path),
        serving_image=pipeline.IMAGE,
        timeout=5,
        rollout=rollout,
    )
    return read(Path(rollout.uri)), published


def test_knative_mode_rolls_out_with_canary_traffic_percent(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    store = tmp_path / "store"
    docs, version = publish_into(store, tmp_path, "Knative", "3")
    assert version == 4 and (store / "CHAMPION").read_text() == "4\n"
    assert [d["metadata"]["name"] for d in docs] == ["recommender"] * 3
    canary = [d["spec"]["predictor"].get("canaryTrafficPercent") for d in docs]
    assert canary == [10, 50, None]  # the last promotes the new revision to all the traffic
    # The store is under the claim's mount here: KServe reads the version from the claim.
    assert {isvc_model(d) for d in docs} == {"pvc://recommender-models/store/versions/4"}
    for doc in docs:
        assert manifests.validate(doc) == []
    # The first version has nothing to split with.
    docs, _ = publish_into(tmp_path / "fresh", tmp_path, "Knative", "")
    assert [d["spec"]["predictor"].get("canaryTrafficPercent") for d in docs] == [None]


def test_publish_refuses_bad_rollout_settings(tmp_path) -> None:
    with pytest.raises(ValueError, match="deployment_mode"):
        publish_into(tmp_path / "s1", tmp_path, "Serverless", "")
    with pytest.raises(ValueError, match="traffic_steps"):
        pipeline.publish.python_func(
            model=dsl.Model(name="model", uri=str(tmp_path)),
            store=str(tmp_path / "s2"),
            deployment_mode="Standard",
            traffic_steps=[50, 10],
            step_seconds=0,
            namespace="",
            models_pvc=pipeline.MODELS_PVC,
            pvc_mount=pipeline.PVC_MOUNT,
            serving_image=pipeline.IMAGE,
            timeout=5,
            rollout=dsl.Artifact(name="rollout", uri=str(tmp_path / "r.yaml")),
        )


class FakeCluster:
    """The CustomObjectsApi calls publish makes; every InferenceService is Ready at once, and
    each VirtualService write is recorded, so the weights can be followed."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.routes: list[dict] = []

    def _store(self, plural, namespace, body, version):
        meta = {**body["metadata"], "resourceVersion": str(version), "generation": version}
        status = {
            "observedGeneration": version,
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        stored = {**body, "metadata": meta}
        if plural == "inferenceservices":
            stored["status"] = status
        else:
            self.routes.append(weights(body))
        self.objects[f"{plural}/{namespace}/{body['metadata']['name']}"] = stored

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        if f"{plural}/{namespace}/{body['metadata']['name']}" in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self._store(plural, namespace, body, 1)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if f"{plural}/{namespace}/{name}" not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        return self.objects[f"{plural}/{namespace}/{name}"]

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        current = self.objects[f"{plural}/{namespace}/{name}"]["metadata"]["resourceVersion"]
        if body["metadata"].get("resourceVersion") != current:
            raise ApiException(status=409, reason="Conflict")
        self._store(plural, namespace, body, int(current) + 1)


def test_publish_on_a_cluster_moves_the_weights_to_the_idle_slot(tmp_path, monkeypatch) -> None:
    api = FakeCluster()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", lambda: api)
    store = tmp_path / "store"
    _, first = publish_into(store, tmp_path, "Standard", "")
    assert first == 1
    assert api.routes == [{"recommender-blue-predictor": 100, "recommender-green-predictor": 0}]
    _, second = publish_into(store, tmp_path, "Standard", "")
    assert second == 2 and (store / "CHAMPION").read_text() == "2\n"
    green = [
        {"recommender-blue-predictor": 100 - p, "recommender-green-predictor": p}
        for p in (10, 50, 100)
    ]
    assert api.routes[1:] == green
    blue = api.objects["inferenceservices/team-a/recommender-blue"]
    assert isvc_model(blue) == "pvc://recommender-models/store/versions/1"  # kept for a rollback
    green_isvc = api.objects["inferenceservices/team-a/recommender-green"]
    assert isvc_model(green_isvc) == "pvc://recommender-models/store/versions/2"
    # The third goes back to blue, from green's 100.
    publish_into(store, tmp_path, "Standard", "")
    assert api.routes[-1] == {"recommender-blue-predictor": 100, "recommender-green-predictor": 0}
    assert isvc_model(api.objects["inferenceservices/team-a/recommender-blue"]).endswith("/3")


def test_a_failed_rollout_leaves_the_champion_named(tmp_path, monkeypatch) -> None:
    api = FakeCluster()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", lambda: api)
    store = tmp_path / "store"
    publish_into(store, tmp_path, "Standard", "")

    def forbidden(*args, **kwargs):
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(api, "replace_namespaced_custom_object", forbidden)
    monkeypatch.setattr(api, "create_namespaced_custom_object", forbidden)
    with pytest.raises(ApiException):
        publish_into(store, tmp_path, "Standard", "")
    assert (store / "CHAMPION").read_text() == "1\n"


class FakeClient:
    """The kfp.Client calls schedule() makes, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_experiment(self, name, description=None, namespace=None):
        self.calls.append(("create_experiment", {"name": name, "namespace": namespace}))
        return type("Experiment", (), {"experiment_id": "exp-1"})()

    def create_recurring_run(self, **kwargs):
        self.calls.append(("create_recurring_run", kwargs))
        return "recurring-run"


def test_schedule_creates_a_recurring_run_every_30_minutes_one_at_a_time() -> None:
    client = FakeClient()
    result = pipeline.schedule(client, namespace="team-a", arguments={"num_nodes": 3})
    assert result == "recurring-run"
    (_, experiment), (_, run) = client.calls
    assert experiment == {"name": "recommender-model-update", "namespace": "team-a"}
    assert run["experiment_id"] == "exp-1"
    # robfig/cron's six fields, seconds first: second 0 of minutes 0 and 30 of every hour.
    assert run["cron_expression"] == "0 */30 * * * *"
    assert run["max_concurrency"] == 1 and run["no_catchup"] is True
    assert run["pipeline_package_path"] == str(pipeline.COMPILED)
    assert run["params"] == {"num_nodes": 3}
    assert "interval_second" not in run


def test_schedule_takes_only_periods_that_divide_the_hour() -> None:
    assert pipeline.cron_every(60) == "0 0 * * * *"
    assert pipeline.cron_every(5) == "0 */5 * * * *"
    for minutes in (0, 7, 90):
        with pytest.raises(ValueError, match="divide 60"):
            pipeline.schedule(FakeClient(), every_minutes=minutes)


def test_committed_yaml_is_in_step_with_pipeline_py() -> None:
    assert find_pipeline(pipeline) is pipeline.recommender_pipeline
    assert pipeline.IMAGE == pipeline.DEFAULT_IMAGE, f"unset {pipeline.IMAGE_VARIABLE} to test"
    assert compiled_drift(pipeline.recommender_pipeline, pipeline.COMPILED) is None


def test_every_component_uses_the_case_image_installs_nothing_and_mounts_the_claim() -> None:
    spec, platform = read(pipeline.COMPILED)
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == [f"exec-{step}" for step in STEPS]
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == CASE_TOML.image == pipeline.IMAGE, name
        command = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in command, f"{name} installs packages at run time"
        (mount,) = mounts[name]["pvcMount"]
        assert mount["mountPath"] == pipeline.PVC_MOUNT, name
    # The claim the TrainJob's nodes mount, where they mount it.
    patch = TRAINJOB["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    pod = patch["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == pipeline.MODELS_PVC
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == pipeline.PVC_MOUNT


def test_publish_is_gated_on_the_decision_and_nothing_is_cached() -> None:
    spec, _ = read(pipeline.COMPILED)
    tasks = spec["root"]["dag"]["tasks"]
    gate = tasks["condition-1"]
    assert gate["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] == 'publish'"
    )
    inside = spec["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inside) == ["publish"]
    for task in [*tasks.values(), *inside.values()]:
        assert not task.get("cachingOptions", {}).get("enableCache"), task


def test_the_cli_compiles_with_another_image(tmp_path: Path) -> None:
    image = "registry.example.com/team/recommender:1.2.3"
    out = tmp_path / "pipeline.yaml"
    pipeline.main(["--image", image, "--output", str(out)])
    spec, _ = read(out)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {image}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["training_image"]["defaultValue"] == image
    assert parameters["serving_image"]["defaultValue"] == image


def update(tmp_path: Path, source: Path, store: Path, name: str) -> tuple[Path, Path, dict]:
    """Call the update-data component as its pod would; (training data, holdout, metadata)."""
    out = tmp_path / name
    out.mkdir()
    transactions = dsl.Dataset(name="transactions", uri=str(out / "transactions"))
    holdout = dsl.Dataset(name="holdout", uri=str(out / "holdout"))
    pipeline.update_data.python_func(
        sample=True,  # data_file wins over it
        data_file=str(source),
        data_dir=str(tmp_path / "cache"),
        store=str(store),
        holdout_seed=42,
        transactions=transactions,
        holdout=holdout,
    )
    return Path(transactions.uri), Path(holdout.uri), holdout.metadata


def test_refreshed_data_keeps_the_holdout_frozen_and_out_of_training(tmp_path: Path) -> None:
    """A later export with new customers and purchases: the holdout stays as the first run froze
    it, and none of its pairs reach the training data, even bought again."""
    first = tmp_path / "export-1.csv"
    first.write_text(data.SAMPLE.read_text())
    store = tmp_path / "store"
    _, frozen, meta = update(tmp_path, first, store, "run-1")
    assert meta["status"] == "frozen by this run"
    held = data.read_transactions(frozen)
    customer, product = sorted(pairs(held))[0]
    refreshed = tmp_path / "export-2.csv"
    # A new customer, and a held-out pair bought again.
    refreshed.write_text(
        first.read_text() + f"new-customer,1|2|3\n{customer},{product}|{product}\n"
    )
    training, again, meta = update(tmp_path, refreshed, store, "run-2")
    assert meta["status"] == "frozen earlier"
    assert again.read_bytes() == frozen.read_bytes()
    fit = data.read_transactions(training)
    assert "new-customer" in fit.user_ids
    assert not pairs(fit) & pairs(held)


def test_train_creates_the_trainjob_on_the_claim_and_copies_the_chiefs_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = tmp_path / "claim"  # the models claim, as the step's pod mounts it
    created: list[dict] = []

    class Trainer:
        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            assert (group, version, namespace, plural) == (
                "trainer.kubeflow.org",
                "v1alpha1",
                "team-a",
                "trainjobs",
            )
            args = body["spec"]["trainer"]["args"]
            flag = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a}
            # The data is on the claim where the nodes will read it.
            assert (claim / flag["--data-file"].removeprefix("/mnt/pvc/")).read_text() == "csv"
            written = claim / flag["--model-dir"].removeprefix("/mnt/pvc/")
            written.mkdir(parents=True)
            (written / "model.keras").write_text("weights")
            (written / "metrics.json").write_text('{"test_ndcg_at_10": 0.3, "workers": 3}')
            created.append(body)

        def get_namespaced_custom_object(self, group, version, namespace, plural, name):
            return {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", Trainer)
    (tmp_path / "transactions").write_text("csv")
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    pipeline.train.python_func(
        transactions=dsl.Dataset(name="transactions", uri=str(tmp_path / "transactions")),
        num_nodes=3,
        epochs=20,
        batch_size=256,
        learning_rate=0.002,
        namespace="team-a",
        training_image="registry.example.com/recommender:2",
        timeout=60,
        pvc_mount=str(claim),
        model=dsl.Model(name="model", uri=str(tmp_path / "model")),
        metrics=metrics,
    )
    (job,) = created
    assert job["metadata"]["name"].startswith(TRAINJOB["metadata"]["name"] + "-")
    assert manifests.validate(job) == []
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 3 and {"name": "TF_NUM_NODES", "value": "3"} in trainer["env"]
    assert trainer["image"] == "registry.example.com/recommender:2"
    args = trainer["args"]
    assert args[:3] == TRAINJOB["spec"]["trainer"]["args"][:3]
    assert {"--epochs=20", "--batch-size=256", "--learning-rate=0.002"} <= set(args)
    assert sum(a.startswith("--epochs=") for a in args) == 1
    assert (tmp_path / "model" / "model.keras").read_text() == "weights"
    assert metrics.metadata == {"test_ndcg_at_10": 0.3, "workers": 3}
    assert job["spec"]["runtimePatches"] == TRAINJOB["spec"]["runtimePatches"]
