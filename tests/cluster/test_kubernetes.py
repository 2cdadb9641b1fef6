"""The Kubernetes recipes: valid objects for the Dask operator, and the same cluster as our configuration.

* every manifest in deploy/kubernetes/ parses and is a Kubernetes object; the DaskCluster and the
  DaskJob validate against the openAPIV3Schema of the CRDs shipped inside dask_kubernetes, and carry
  no field the API server would prune;
* ``cluster_spec()`` (``make_cluster_spec`` from deploy/kubernetes/dask-kubernetes.yaml, plus volumes)
  yields exactly the scheduler and worker specs of daskcluster.yaml and of daskjob.yaml's cluster;
* the worker memory limits follow the measured bounded-memory figures;
* ``start_cluster`` sizes the cluster from ``--workers``/``--adapt`` (a stand-in KubeCluster: no
  Kubernetes here), and a missing dask-kubernetes is a one-line ConfigError.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import sys
from pathlib import Path

import dask.config
import pytest
import yaml

from coron3_dask.cli import kubernetes
from coron3_dask.config import ConfigError

KUBERNETES = Path(__file__).parents[2] / "deploy" / "kubernetes"
CONFIG = KUBERNETES / "dask-kubernetes.yaml"
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p != CONFIG)
DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
#: benchmarks/RESULTS.md, "Bounded memory": peak RSS per 1-thread worker under a 2 GiB Dask limit
MEASURED_PEAK_MIB = 1662
MEASURED_DASK_LIMIT_MIB = 2048


def _docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def _objects() -> dict[str, dict]:
    return {doc["kind"]: doc for path in MANIFESTS for doc in _docs(path)}


def _crd_schema(kind: str) -> dict:
    """The openAPIV3Schema of dask_kubernetes's CRD for ``kind`` (the fully expanded, Helm-chart copy)."""
    dask_kubernetes = pytest.importorskip("dask_kubernetes")
    schemas = _crd_schemas(Path(dask_kubernetes.__file__).parent)
    if kind not in schemas:
        pytest.fail(f"no CRD for {kind} in {dask_kubernetes.__file__}")
    return copy.deepcopy(schemas[kind])


@functools.cache
def _crd_schemas(package: Path) -> dict[str, dict]:
    schemas = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in sorted(package.rglob("*.yaml")):
        text = path.read_text()
        if "kind: CustomResourceDefinition" not in text or "$ref" in text:  # templates, not expanded CRDs
            continue
        for doc in yaml.load_all(text, Loader=loader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                (version,) = [v for v in doc["spec"]["versions"] if v["name"] == "v1"]
                schemas[doc["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def _pruned(doc: object, schema: dict, where: str = "") -> list[str]:
    """Fields the API server would silently drop: not declared by a structural schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(doc, dict):
        if "properties" not in schema:
            extra = schema.get("additionalProperties")
            return [p for k, v in doc.items() for p in _pruned(v, extra, f"{where}.{k}")] if extra else []
        out = [f"{where}.{k}" for k in doc if k not in schema["properties"]]
        return out + [
            p
            for k, v in doc.items()
            if k in schema["properties"]
            for p in _pruned(v, schema["properties"][k], f"{where}.{k}")
        ]
    if isinstance(doc, list) and "items" in schema:
        return [p for i, v in enumerate(doc) for p in _pruned(v, schema["items"], f"{where}[{i}]")]
    return []


def _mib(quantity: str) -> float:
    """A Kubernetes quantity or a Dask size (``2560Mi``, ``4Gi``, ``2GiB``) in MiB."""
    number, unit = re.fullmatch(r"([0-9.]+)\s*([KMG]i)B?", quantity).groups()
    return float(number) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[unit]


def _spec_from_config(**kubernetes_keys: object) -> dict:
    config = kubernetes.read_config(CONFIG)
    return kubernetes.cluster_spec(dask.config.merge(config, {"kubernetes": kubernetes_keys}))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_kubernetes_objects(path):
    docs = _docs(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata", "spec"} <= doc.keys(), path.name
        assert re.fullmatch(r"([a-z0-9.-]+/)?v\d+(alpha\d+|beta\d+)?", doc["apiVersion"]), doc["apiVersion"]
        assert DNS1123.fullmatch(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "coron3-dask"


def test_the_recipes_are_a_claim_a_cluster_and_a_job():
    objects = _objects()
    assert sorted(objects) == ["DaskCluster", "DaskJob", "PersistentVolumeClaim"]
    assert objects["DaskCluster"]["apiVersion"] == objects["DaskJob"]["apiVersion"] == "kubernetes.dask.org/v1"
    claim = objects["PersistentVolumeClaim"]
    assert claim["apiVersion"] == "v1"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "workers on several nodes write the products"
    assert _mib(claim["spec"]["resources"]["requests"]["storage"]) > 0


@pytest.mark.parametrize("kind", ["DaskCluster", "DaskJob"])
def test_dask_resources_validate_against_the_operator_crd(kind):
    jsonschema = pytest.importorskip("jsonschema")
    schema = _crd_schema(kind)
    doc = _objects()[kind]
    jsonschema.Draft4Validator(schema).validate(doc)  # raises with the offending path
    assert not _pruned(doc["spec"], schema["properties"]["spec"], ".spec")


def test_crd_validation_catches_mistakes():
    jsonschema = pytest.importorskip("jsonschema")
    schema = _crd_schema("DaskCluster")
    jsonschema.Draft4Validator.check_schema(schema)  # OpenAPI v3 schemas are a JSON Schema draft 4 dialect
    doc = _objects()["DaskCluster"]
    bad = yaml.safe_load(yaml.safe_dump(doc))
    bad["spec"]["worker"]["replicas"] = "four"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(bad)
    typo = yaml.safe_load(yaml.safe_dump(doc))
    typo["spec"]["worker"]["spec"]["containers"][0]["volumeMount"] = []
    assert _pruned(typo["spec"], schema["properties"]["spec"], ".spec") == [
        ".spec.worker.spec.containers[0].volumeMount"
    ]


def test_cluster_spec_is_the_daskcluster_manifest():
    pytest.importorskip("dask_kubernetes")
    manifest = _objects()["DaskCluster"]
    built = kubernetes.cluster_spec(kubernetes.read_config(CONFIG))
    assert (built["apiVersion"], built["kind"]) == (manifest["apiVersion"], manifest["kind"])
    assert built["metadata"]["name"] == manifest["metadata"]["name"]
    for role in ("scheduler", "worker"):  # the subtrees one by one, for a readable diff
        pod, want = built["spec"][role]["spec"], manifest["spec"][role]["spec"]
        for key in ("image", "args", "resources", "env", "volumeMounts", "ports"):
            assert pod["containers"][0].get(key) == want["containers"][0].get(key), (role, key)
        for key in ("volumes", "securityContext"):
            assert pod.get(key) == want.get(key), (role, key)
    assert built["spec"] == manifest["spec"]


def test_the_daskjob_runs_a_campaign_on_the_same_cluster():
    pytest.importorskip("dask_kubernetes")
    job = _objects()["DaskJob"]
    name = job["metadata"]["name"]
    # the operator names the job's cluster after the job; the scheduler Service selects by that name
    assert job["spec"]["cluster"]["spec"] == _spec_from_config(name=name)["spec"]
    pod = job["spec"]["job"]["spec"]
    (client,) = pod["containers"]
    worker_pod = job["spec"]["cluster"]["spec"]["worker"]["spec"]
    assert client["image"] == worker_pod["containers"][0]["image"], "one image: the same dask/distributed"
    args, env = client["args"], {e["name"]: e["value"] for e in client["env"]}
    assert args[:2] == ["coron3-dask", "campaign"]
    assert args[args.index("--scheduler") + 1] == "$(DASK_SCHEDULER_ADDRESS)"  # set by the operator
    referenced = set(re.findall(r"\$\((\w+)\)", " ".join(args)))
    assert referenced <= env.keys() | {"DASK_SCHEDULER_ADDRESS"}, referenced - env.keys()
    output_root = env[args[args.index("--output-root") + 1].strip("$()")]
    assert output_root.startswith("/data/"), "campaign.sqlite and the products go on the shared volume"
    # the client and the workers see the same claim under the same path
    claims = {}
    for owner, container in ((pod, client), (worker_pod, worker_pod["containers"][0])):
        volumes = {v["name"]: v for v in owner["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        claims[container["name"]] = mounts["/data"]["persistentVolumeClaim"]["claimName"]
    assert set(claims.values()) == {_objects()["PersistentVolumeClaim"]["metadata"]["name"]}
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True


def test_worker_memory_follows_the_measured_figures():
    worker = _objects()["DaskCluster"]["spec"]["worker"]["spec"]["containers"][0]
    args = worker["args"]
    dask_limit = _mib(args[args.index("--memory-limit") + 1])
    container_limit = _mib(worker["resources"]["limits"]["memory"])
    assert args[args.index("--nthreads") + 1] == "1", "the figures are for single-threaded workers"
    assert MEASURED_PEAK_MIB < dask_limit <= MEASURED_DASK_LIMIT_MIB, "the limit the large programme ran under"
    assert 1.2 * dask_limit <= container_limit, "room for the nanny: Dask acts before the OOM killer"
    assert _mib(worker["resources"]["requests"]["memory"]) == container_limit


def test_cluster_spec_refuses_the_default_image():
    pytest.importorskip("dask_kubernetes")
    with pytest.raises(ConfigError, match="lacks coron3_dask"):
        _spec_from_config(image="ghcr.io/dask/dask:latest")


class _FakeKubeCluster:
    def __init__(self, *, custom_cluster_spec: dict) -> None:
        self.spec, self.calls = custom_cluster_spec, []

    def scale(self, n: int) -> None:
        self.calls.append(("scale", n))

    def adapt(self, minimum: int, maximum: int) -> None:
        self.calls.append(("adapt", minimum, maximum))


@pytest.mark.parametrize(
    ("workers", "adapt", "calls"),
    [(8, None, [("scale", 8)]), (8, "2:32", [("adapt", 2, 32)]), (None, (0, 8), [("adapt", 0, 8)]), (None, None, [])],
)
def test_start_cluster_sizes_the_configured_cluster(monkeypatch, workers, adapt, calls):
    operator = pytest.importorskip("dask_kubernetes.operator")
    monkeypatch.setattr(operator, "KubeCluster", _FakeKubeCluster)
    monkeypatch.setattr(dask.config, "config", dask.config.merge(dask.config.config, kubernetes.read_config(CONFIG)))
    cluster = kubernetes.start_cluster(argparse.Namespace(workers=workers, adapt=adapt))
    assert cluster.calls == calls
    assert cluster.spec["spec"] == _objects()["DaskCluster"]["spec"]


@pytest.mark.parametrize("adapt", ["32", "4:2", "a:b", ":", (4, 2), (-1, 2)])
def test_start_cluster_rejects_a_bad_adapt_before_starting_anything(monkeypatch, adapt):
    monkeypatch.setitem(sys.modules, "dask_kubernetes", None)  # would fail later if reached
    with pytest.raises(ConfigError, match="MIN:MAX") as error:
        kubernetes.start_cluster(argparse.Namespace(workers=None, adapt=adapt))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("call", ["cluster_spec", "start_cluster"])
def test_missing_dask_kubernetes_is_a_one_line_error(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "dask_kubernetes", None)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(ConfigError) as error:
        if call == "cluster_spec":
            kubernetes.cluster_spec({})
        else:
            kubernetes.start_cluster(argparse.Namespace(workers=4, adapt=None))
    message = str(error.value)
    assert "\n" not in message
    assert "pip install 'coron3_dask[kubernetes]'" in message
