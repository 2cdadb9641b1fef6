"""deploy/ recipes are well-formed and notebooks/ run top to bottom (style guide section 7.8).

The notebook test executes the code cells in order in one namespace, the way a kernel would,
on a tiny programme with the threads scheduler (no Jupyter needed).  deploy/local-cluster.sh is
only syntax-checked here: starting real scheduler/worker processes is the cluster tests' job.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[1]
DEPLOY = REPO / "deploy"
NOTEBOOKS = REPO / "notebooks"
SHELL_SCRIPTS = sorted([*DEPLOY.rglob("*.sh"), *DEPLOY.rglob("*.sbatch")])
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
IMAGE = "coron3-dask:0.1.0"
SCHEDULER_SERVICE = "coron3-scheduler"


def _k8s(path: Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def _containers(doc: dict) -> list[dict]:
    return doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def _volumes(doc: dict) -> dict[str, dict]:
    spec = doc["spec"]["template"]["spec"]
    return {v["name"]: v for v in spec.get("volumes", [])}


def test_deploy_holds_no_python():
    assert not list(DEPLOY.rglob("*.py")), "deploy/ holds recipes only (style guide 7.8)"


@pytest.mark.parametrize("path", KUBERNETES, ids=lambda p: p.name)
def test_kubernetes_manifests_parse(path):
    docs = _k8s(path)
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata", "spec"} <= doc.keys(), doc.get("kind")
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "coron3-dask"


def test_kubernetes_recipes_agree():
    docs = {(d["kind"], d["metadata"]["name"]): d for p in KUBERNETES for d in _k8s(p)}
    assert {
        ("Deployment", SCHEDULER_SERVICE),
        ("Service", SCHEDULER_SERVICE),
        ("Deployment", "coron3-workers"),
        ("Job", "coron3-run"),
        ("PersistentVolumeClaim", "coron3-data"),
    } <= docs.keys()
    # one image everywhere: client, scheduler and workers need the same dask/distributed
    images = {c["image"] for d in docs.values() for c in _containers(d)}
    assert images == {IMAGE}

    scheduler = _containers(docs["Deployment", SCHEDULER_SERVICE])[0]
    assert scheduler["command"] == ["dask", "scheduler"]
    assert "8786" in scheduler["args"]
    service = docs["Service", SCHEDULER_SERVICE]
    assert {p["port"] for p in service["spec"]["ports"]} == {8786, 8787}
    assert (
        service["spec"]["selector"] == docs["Deployment", SCHEDULER_SERVICE]["spec"]["template"]["metadata"]["labels"]
    )
    address = f"tcp://{SCHEDULER_SERVICE}:8786"

    worker = _containers(docs["Deployment", "coron3-workers"])[0]
    assert worker["command"] == ["dask", "worker"] and worker["args"][0] == address
    assert {e["name"]: e.get("value") for e in worker["env"]}["OMP_NUM_THREADS"] == "1"

    job = docs["Job", "coron3-run"]
    client = _containers(job)[0]
    assert "command" not in client, "the Job uses the image's ENTRYPOINT (coron3-dask)"
    args = client["args"]
    assert "run" in args and args[args.index("--scheduler") + 1] == address

    # products are written by the workers: the workers and the client mount the same claim at the same path
    claim = docs["PersistentVolumeClaim", "coron3-data"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for owner in (docs["Deployment", "coron3-workers"], job):
        mounts = {m["name"]: m["mountPath"] for m in _containers(owner)[0]["volumeMounts"]}
        assert mounts["data"] == "/data"
        assert _volumes(owner)["data"]["persistentVolumeClaim"]["claimName"] == "coron3-data"
    env = {e["name"]: e.get("value", "") for e in client["env"]}
    assert env["ASN"].startswith("/data/") and env["OUTPUT_DIR"].startswith("/data/")


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [
        line.split(maxsplit=1)[0]
        for line in re.sub(r"\\\n", " ", text).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert instructions[0] == "FROM" and "FROM python:3.11-slim" in text
    assert set(instructions) <= {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert 'ENTRYPOINT ["coron3-dask"]' in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0")), "the image runs as a non-root user"
    for source in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    assert "requirements-lock.txt" in text


def test_requirements_lock_pins_every_runtime_dependency():
    lines = [line.strip() for line in (DEPLOY / "requirements-lock.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", name) and version for name, version in pins.items())
    names = {name.lower().replace("_", "-") for name in pins}
    with (REPO / "pyproject.toml").open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    runtime = {re.split(r"[\[<>=!~; ]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in dependencies}
    assert runtime <= names, f"not pinned: {runtime - names}"
    assert not {"pytest", "hypothesis", "jwst", "ruff", "mypy", "coron3-dask"} & names, "runtime packages only"


@pytest.mark.parametrize("path", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_shell_scripts_parse(path):
    assert path.read_text().startswith("#!"), "needs a shebang"
    subprocess.run(["bash", "-n", str(path)], check=True, capture_output=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "--shell=bash", str(path)], check=True, capture_output=True)


def test_slurm_recipes():
    one = (DEPLOY / "slurm" / "coron3.sbatch").read_text()
    assert "dask scheduler --scheduler-file" in one and "dask worker --scheduler-file" in one
    assert "--scheduler-file" in one.split("coron3-dask", 2)[-1]
    assert "OMP_NUM_THREADS=1" in one and one.count("srun ") >= 2
    campaign = (DEPLOY / "slurm" / "campaign.sbatch").read_text()
    assert "SLURM_ARRAY_TASK_ID" in campaign and "_i2d.fits" in campaign and "skip" in campaign


def test_readme_covers_every_recipe():
    readme = (DEPLOY / "README.md").read_text()
    for path in [*SHELL_SCRIPTS, *KUBERNETES, DEPLOY / "Dockerfile", DEPLOY / "requirements-lock.txt"]:
        assert str(path.relative_to(DEPLOY)) in readme, f"deploy/README.md does not mention {path.name}"
    for topic in ("make demo", "--scheduler-file", "dask-jobqueue", "port-forward", "ssh -N -L", "ReadWriteMany"):
        assert topic in readme


def _code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text())
    assert notebook["nbformat"] == 4
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def test_notebooks_only_call_the_package():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, "commit notebooks cleared"
                tree = ast.parse("".join(cell["source"]))
                defined = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
                assert not defined, f"{path.name} defines {defined}: helpers belong in the package (style 7.8)"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    monkeypatch.setenv("COR3_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("COR3_NOTEBOOK_SCHEDULER", "threads")
    monkeypatch.setenv("COR3_NOTEBOOK_SCIENCE_INTS", "2")
    monkeypatch.setenv("COR3_NOTEBOOK_REF_INTS", "1")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    try:
        for i, source in enumerate(_code_cells(NOTEBOOKS / "01_quickstart.ipynb")):
            exec(compile(source, f"01_quickstart.ipynb[code cell {i}]", "exec"), namespace)
        result = namespace["result"]
        assert all(p.is_file() and p.parent == tmp_path / "products" for p in result.paths)
        assert any(p.name.endswith("_i2d.fits") for p in result.paths)
        for name in ("fig_psfsub", "fig_i2d", "fig_shifts"):
            figure = namespace[name]
            assert isinstance(figure, Figure)
            assert any(ax.images or ax.collections or ax.patches for ax in figure.axes), name
        assert len(namespace["errors"]) == 2 * 2 * 5  # 2 rolls x 2 ints x (5 dithers x 1 int)
        assert namespace["graph"] and namespace["products"].i2d
    finally:
        plt.close("all")
