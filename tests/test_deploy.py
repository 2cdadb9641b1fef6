"""deploy/ recipes are well-formed and notebooks/ run top to bottom (style guide section 7.8).

The notebook test executes the code cells in order in one namespace, the way a kernel would,
on a tiny programme with the threads scheduler (no Jupyter needed).  deploy/local-cluster.sh is
only syntax-checked here: starting real scheduler/worker processes is the cluster tests' job.
The Kubernetes manifests are checked in tests/cluster/test_kubernetes.py.  The container is checked
as text (pinned base, lock installed as pinned, non-root user): no container engine runs here, so it
is never built by the tests.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).parents[1]
DEPLOY = REPO / "deploy"
NOTEBOOKS = REPO / "notebooks"
SHELL_SCRIPTS = sorted([*DEPLOY.rglob("*.sh"), *DEPLOY.rglob("*.sbatch")])
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
LOCK = DEPLOY / "requirements-lock.txt"
#: the extras that put coron3_dask on a cluster: the image carries them all
CLUSTER_EXTRAS = {"kubernetes", "slurm", "pbs"}


def test_deploy_holds_no_python():
    assert not list(DEPLOY.rglob("*.py")), "deploy/ holds recipes only (style guide 7.8)"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(maxsplit=1)[0], line.split(maxsplit=1)[1]) for line in joined.splitlines() if line.strip()]


def test_containerfile():
    text = CONTAINERFILE.read_text()
    instructions = _instructions(text)
    kinds = [kind for kind, _ in instructions]
    assert kinds[0] == "FROM" and kinds.count("FROM") == 1
    assert set(kinds) <= {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}
    base = instructions[0][1]
    # pinned: by digest, or by an exact x.y.z tag (never latest, 3.11 or 3.11-slim)
    assert re.fullmatch(r"\S+@sha256:[0-9a-f]{64}", base) or re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    assert f"python:{sys.version_info.major}.{sys.version_info.minor}." in base, "the Python the tests run on"
    runs = [args for kind, args in instructions if kind == "RUN"]
    lock = str(LOCK.relative_to(REPO))
    assert any(f"pip install --no-deps -r {lock}" in run for run in runs), "the lock, installed exactly as pinned"
    (package,) = [run for run in runs if 'pip install --no-deps ".[' in run]
    extras = set(re.search(r'"\.\[([\w,-]+)\]"', package).group(1).split(","))
    assert extras == CLUSTER_EXTRAS & _optional_dependencies().keys() | {"kubernetes"}
    assert "pip check" in package
    for kind, args in instructions:
        if kind == "COPY":
            for source in [word for word in args.split() if not word.startswith("--")][:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert _allowed_by_dockerignore(source), f"COPY {source}: excluded by the .dockerignore"
        if kind == "RUN" and "apt-get install" in args:
            packages = [w for w in args.split("apt-get install", 1)[1].split("&&")[0].split() if not w.startswith("-")]
            assert packages and all("=" in p for p in packages), f"apt packages pinned: {packages}"
    users = [args.split(":")[0] for kind, args in instructions if kind == "USER"]
    assert (
        users
        and users[-1] not in {"root", "0"}
        and kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    ), "the image runs as a non-root user (after the last RUN)"
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    assert entrypoint[0] == "tini" and entrypoint[-1] == "--", "an init as PID 1; the command is the argument list"
    assert json.loads(dict(instructions)["CMD"])[0] == "coron3-dask"


def _allowed_by_dockerignore(source: str) -> bool:
    patterns = [line for line in (CONTAINERFILE.parent / "Containerfile.dockerignore").read_text().splitlines()]
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    return any(source == p or source.startswith(p.removesuffix("**").rstrip("/")) for p in allowed)


def _optional_dependencies() -> dict[str, list[str]]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def _pins() -> dict[str, Version]:
    lines = [line.strip() for line in LOCK.read_text().splitlines()]
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(pin) == 2 and re.fullmatch(r"[A-Za-z0-9_.\-]+", pin[0]) for pin in pins), "NAME==VERSION lines"
    names = [canonicalize_name(name) for name, _ in pins]
    assert len(names) == len(set(names)), "each package pinned once"
    return {canonicalize_name(name): Version(version) for name, version in pins}


def test_lock_pins_every_runtime_and_cluster_dependency():
    with (REPO / "pyproject.toml").open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    extras = _optional_dependencies()
    assert "kubernetes" in extras
    required = [Requirement(dep) for dep in dependencies]
    required += [Requirement(dep) for name in CLUSTER_EXTRAS & extras.keys() for dep in extras[name]]
    pins = _pins()
    for requirement in required:
        if requirement.marker and not requirement.marker.evaluate({"python_version": "3.11", "sys_platform": "linux"}):
            continue  # not installed in the image (Python 3.11, Linux)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not pinned in {LOCK.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} breaks {requirement}"
        )
    test_only = {canonicalize_name(Requirement(dep).name) for dep in extras["test"]}
    runtime = {canonicalize_name(r.name) for r in required}
    assert not (test_only - runtime) & pins.keys(), "runtime and cluster packages only: no test tools"
    assert "coron3-dask" not in pins


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
    recipes = [*SHELL_SCRIPTS, *KUBERNETES, CONTAINERFILE, CONTAINERFILE.with_name("Containerfile.dockerignore"), LOCK]
    for path in recipes:
        # documented in deploy/README.md, or in the README.md of its own folder (deploy/tls/, ...)
        own = path.parent / "README.md"
        mentioned = str(path.relative_to(DEPLOY)) in readme
        mentioned |= path.parent != DEPLOY and own.is_file() and path.name in own.read_text()
        assert mentioned, f"neither deploy/README.md nor {own.relative_to(REPO)} mentions {path.name}"
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
