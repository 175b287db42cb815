"""Rule by rule: the conda env a rule names holds every third-party package its code can import.

For every rule of the workflow (read with Snakemake's own parser, so nothing is missed), the
script it runs is followed through the ``tlcgcnn`` package by :mod:`import_closure`: module-level imports,
lazy imports inside the functions the
script reaches, at any depth. Each third-party import name is mapped to its distribution
(``sklearn`` -> scikit-learn, ``torch`` -> pytorch on conda-forge, ...) and must be in the
rule's env file, as a conda or a pip dependency. ``read_parquet`` / ``to_parquet`` count as a
need for pyarrow. A failure names the rule, the env file, the package and where it is imported.

A run-time cross-check: per env, every package module its rules reach is imported in a fresh
interpreter where the packages the env lacks (torch, scikit-learn, gemmi, ...) cannot be
imported. Also checked: one numpy / pandas version across all envs, env pins equal to requirements.txt,
and pyproject.toml listing every third-party import of the package and shipping its data.

Not done here: building each env for real. Conda channels are unreachable from CI, and an
equivalent pip venv per env needs ~1 GB of wheels that are not cached on the CI machine (well
over the two minutes such a check may take), so the check is static.
"""

from __future__ import annotations

import copy
import re
import sys
import tomllib
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from conftest import ROOT
from import_closure import ImportClosure

SRC = ROOT / "src"

# import name -> (conda-forge package names, PyPI distribution names); either satisfies
DISTRIBUTIONS: dict[str, tuple[set[str], set[str]]] = {
    "numpy": ({"numpy"}, {"numpy"}),
    "pandas": ({"pandas"}, {"pandas"}),
    "pyarrow": ({"pyarrow"}, {"pyarrow"}),
    "scipy": ({"scipy"}, {"scipy"}),
    "sklearn": ({"scikit-learn"}, {"scikit-learn"}),
    "torch": ({"pytorch", "pytorch-cpu", "pytorch-gpu"}, {"torch"}),
    "matplotlib": ({"matplotlib-base", "matplotlib"}, {"matplotlib"}),
    "seaborn": ({"seaborn-base", "seaborn"}, {"seaborn"}),
    "pymatgen": ({"pymatgen"}, {"pymatgen"}),
    "gemmi": ({"gemmi"}, {"gemmi"}),
    "ase": ({"ase"}, {"ase"}),
    "tqdm": ({"tqdm"}, {"tqdm"}),
    "requests": ({"requests"}, {"requests"}),
    "yaml": ({"pyyaml"}, {"pyyaml"}),
    "jsonschema": ({"jsonschema"}, {"jsonschema"}),
    "mp_api": ({"mp-api"}, {"mp-api"}),
    "emmet": ({"emmet-core"}, {"emmet-core"}),
    "qmpy_rester": ({"qmpy-rester"}, {"qmpy-rester"}),
    "chgnet": ({"chgnet"}, {"chgnet"}),
    "sevenn": ({"sevenn"}, {"sevenn"}),
    "torch_geometric": ({"pytorch_geometric"}, {"torch-geometric", "torch_geometric"}),
    "e3nn": ({"e3nn"}, {"e3nn"}),
}
# conda-forge name -> PyPI name, where they differ (for comparing pins with requirements.txt)
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib", "seaborn-base": "seaborn"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------- reading
@lru_cache(maxsize=1)
def workflow_rules() -> tuple[tuple[str, str | None, str | None, str], ...]:
    """(rule, env file, script, kind) of every rule, from Snakemake's parser. The rule of the
    committed real-data subset joins only with regenerate_embedded=True, so that is set."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    out = []
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf = api.workflow(
            snakefile=ROOT / "Snakefile",
            workdir=ROOT,
            config_settings=ConfigSettings(config={"regenerate_embedded": True}),
            resource_settings=ResourceSettings(),
            storage_settings=StorageSettings(),
        )
        for rule in wf._workflow.rules:
            base = Path(rule.snakefile).parent
            env = str((base / rule.conda_env).resolve().relative_to(ROOT)) if rule.conda_env else None
            script = str((base / rule.script).resolve().relative_to(ROOT)) if rule.script else None
            kind = "script" if script else ("none" if rule.norun else "shell/run")
            out.append((rule.name, env, script, kind))
    return tuple(out)


def load_env(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load((ROOT / path).read_text())


def env_packages(env: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(conda name -> version, pip name -> version) of an env file's dependencies."""
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            for spec in dep.get("pip", []):
                m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:==\s*(\S+))?", spec)
                assert m, f"cannot read pip spec {spec!r}"
                pip[_norm(m.group(1))] = m.group(2) or ""
        else:
            m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:=+\s*(\S+))?", str(dep))
            assert m, f"cannot read conda spec {dep!r}"
            conda[_norm(m.group(1))] = m.group(2) or ""
    return conda, pip


@cache
def script_imports(script: str) -> dict[str, str]:
    needed, _ = ImportClosure(SRC).closure(ROOT / script)
    return {name: where.replace(f"{ROOT}/", "") for name, where in needed.items()}


def rule_problems(rule: str, env_file: str | None, env: dict[str, Any] | None, needed: dict[str, str]) -> list[str]:
    """What a rule's env lacks, one message per package, naming rule, env file and package."""
    if env is None:
        return [f"rule {rule}: runs a script but names no conda env"]
    conda, pip = env_packages(env)
    problems = []
    for name, where in sorted(needed.items()):
        if name not in DISTRIBUTIONS:
            problems.append(
                f"rule {rule}: imports {name!r} ({where}), which tests/workflow/test_envs.py does not know: "
                f"add its conda / PyPI names to DISTRIBUTIONS and the package to {env_file}"
            )
            continue
        conda_names, pip_names = DISTRIBUTIONS[name]
        if not (conda_names & set(conda) or {_norm(p) for p in pip_names} & set(pip)):
            problems.append(
                f"rule {rule}: env {env_file} lacks {' / '.join(sorted(conda_names))} (import {name!r} at {where})"
            )
    return problems


# ----------------------------------------------------------------------------- the check
def test_every_rule_env_holds_what_its_code_imports() -> None:
    rules = workflow_rules()
    names = {r[0] for r in rules}
    # the rules every run has, the zoo's and the opt-in subset rule: a parse that lost rules must fail
    assert {
        "ingest",
        "featurize",
        "split_target",
        "pretrain",
        "evaluate_pretrain",
        "finetune",
        "finetune_baseline",
        "stats",
        "figure",
        "embedded_subset",
        "model_card",
    } <= names
    problems: list[str] = []
    checked = 0
    for rule, env_file, script, kind in rules:
        if kind == "none":  # a target-only rule such as `all`: runs no code
            continue
        if kind != "script":
            problems.append(f"rule {rule}: runs inline shell/run code, which this test cannot check; use a script")
            continue
        assert script is not None
        if env_file is None:
            problems.append(f"rule {rule}: runs {script} but names no conda env")
            continue
        problems += rule_problems(rule, env_file, load_env(env_file), script_imports(script))
        checked += 1
    # every rule with a script (18 after the fine-tuning and figure rules were merged; the demo generator went,
    # the subset and model-card rules came)
    assert checked >= 19, checked
    assert not problems, "\n".join(problems)


def test_a_missing_package_is_reported_with_rule_env_and_package() -> None:
    """The check fails, and says where, when an env loses a package its rule needs."""
    ingest = next(r for r in workflow_rules() if r[0] == "ingest")
    env_file, script = ingest[1], ingest[2]
    assert env_file == "envs/core.yaml" and script is not None
    env = load_env(env_file)
    assert rule_problems("ingest", env_file, env, script_imports(script)) == []
    broken = copy.deepcopy(env)
    broken["dependencies"] = [d for d in broken["dependencies"] if not str(d).startswith("gemmi")]
    problems = rule_problems("ingest", env_file, broken, script_imports(script))
    assert len(problems) == 1, problems
    msg = problems[0]
    assert "rule ingest" in msg and "envs/core.yaml" in msg and "gemmi" in msg and "cif_fast.py" in msg, msg
    # a pip entry satisfies the need as well as a conda one
    broken["dependencies"].append({"pip": ["gemmi==0.7.5"]})
    assert rule_problems("ingest", env_file, broken, script_imports(script)) == []
    # an import the table does not know is reported, not ignored
    unknown = rule_problems("x", env_file, env, {"somepkg": "a.py:1"})
    assert len(unknown) == 1 and "somepkg" in unknown[0] and "DISTRIBUTIONS" in unknown[0]


def test_torch_free_rules_stay_torch_free() -> None:
    """The baselines, descriptors and data rules never import torch (issue 10)."""
    for rule, env_file, script, _kind in workflow_rules():
        if env_file in ("envs/core.yaml", "envs/ml.yaml", "envs/stats.yaml") and script:
            assert "torch" not in script_imports(script), (rule, script_imports(script)["torch"])


# A run-time cross-check of the static closure: in a fresh interpreter where the packages an
# env lacks cannot be imported, every package module a rule reaches must import. (Importing
# runs module-level code only; the lazy imports are the static check's part.)
BLOCKABLE = ("torch", "sklearn", "gemmi", "matplotlib", "seaborn", "mp_api", "qmpy_rester")
_BLOCKER = """
import importlib, sys
blocked = set(sys.argv[1].split(",")) - {""}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not in this rule's env (blocked by tests/workflow/test_envs.py)")
sys.meta_path.insert(0, Block())
sys.path[:0] = sys.argv[2].split(",")
for mod in sys.argv[3].split(","):
    importlib.import_module(mod)
"""


def test_reached_modules_import_without_what_the_env_lacks() -> None:
    import subprocess

    by_env: dict[str, set[str]] = {}
    for _rule, env_file, script, _kind in workflow_rules():
        if script and env_file:
            _, modules = ImportClosure(SRC).closure(ROOT / script)
            by_env.setdefault(env_file, set()).update(modules)
    failures = []
    for env_file, modules in sorted(by_env.items()):
        conda, pip = env_packages(load_env(env_file))
        blocked = [
            name
            for name in BLOCKABLE
            if not (DISTRIBUTIONS[name][0] & set(conda) or {_norm(p) for p in DISTRIBUTIONS[name][1]} & set(pip))
        ]
        res = subprocess.run(
            [sys.executable, "-c", _BLOCKER, ",".join(blocked), f"{SRC}", ",".join(sorted(modules))],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if res.returncode != 0:
            tail = " | ".join(line.strip() for line in res.stderr.strip().splitlines()[-4:])
            failures.append(f"{env_file} (without {blocked}): {tail}")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- versions
def _requirements() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            out[_norm(m.group(1))] = m.group(2)
    return out


def test_one_numpy_and_pandas_version_across_envs_and_pins_match_requirements() -> None:
    reqs = _requirements()
    versions: dict[str, set[str]] = {}
    mismatches = []
    for path in sorted((ROOT / "envs").glob("*.yaml")):
        conda, pip = env_packages(load_env(path))
        for name, ver in [*conda.items(), *pip.items()]:
            pypi = CONDA_TO_PYPI.get(name, name)
            versions.setdefault(pypi, set()).add(ver)
            if pypi in reqs and ver != reqs[pypi]:
                mismatches.append(f"envs/{path.name}: {name}={ver}, requirements.txt has {pypi}=={reqs[pypi]}")
    assert versions["numpy"] == {reqs["numpy"]} and versions["pandas"] == {reqs["pandas"]}, versions
    assert not mismatches, "\n".join(mismatches)


# ----------------------------------------------------------------------------- packaging
def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_lists_every_import_of_the_package() -> None:
    project = _pyproject()["project"]
    declared = {_norm(re.split(r"[<>=!~; \[]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    extras = {
        _norm(re.split(r"[<>=!~; \[]", d, maxsplit=1)[0])
        for deps in project.get("optional-dependencies", {}).values()
        for d in deps
    }
    closure = ImportClosure(SRC)
    needed: dict[str, str] = {}
    for path in sorted((SRC / "tlcgcnn").rglob("*.py")):
        mod = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        got, _ = closure.closure_of_module(mod)
        for name, where in got.items():
            needed.setdefault(name, where)
    assert "gemmi" in needed and "requests" in needed and "torch" in needed
    missing = []
    for name, where in sorted(needed.items()):
        assert name in DISTRIBUTIONS, f"unknown import {name!r} at {where}: add it to DISTRIBUTIONS"
        pypi = {_norm(p) for p in DISTRIBUTIONS[name][1]}
        # torch, the download clients and the CHGNet backbone are extras on purpose (see pyproject.toml)
        extra_ok = name in {"torch", "mp_api", "qmpy_rester", "emmet", "chgnet", "sevenn", "torch_geometric", "e3nn"}
        if not pypi & (declared | (extras if extra_ok else set())):
            missing.append(f"pyproject.toml lacks {'/'.join(sorted(pypi))} (import {name!r} at {where})")
    assert not missing, "\n".join(missing)


def test_package_data_is_shipped() -> None:
    data = _pyproject()["tool"]["setuptools"]["package-data"]["tlcgcnn"]
    pkg = SRC / "tlcgcnn"
    for pattern in data:
        assert list(pkg.glob(pattern)), f"pyproject.toml package-data {pattern!r} matches no file under {pkg}"
    assert any(PurePosixPath("features/atom_features.csv").match(p) for p in data), data
    from tlcgcnn.features import atom_features

    assert atom_features.default_path() == (pkg / "features" / "atom_features.csv").resolve()
    assert atom_features.load_matrix().shape == (101, atom_features.N_FEATURES)


# ----------------------------------------------------------------------------- the analyser
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_closure_follows_lazy_imports_of_reached_code_only(tmp_path: Path) -> None:
    _write(
        tmp_path / "src",
        {
            "tlcgcnn/__init__.py": "",
            "tlcgcnn/io.py": "import json\nimport pandas as pd\n\ndef read(p):\n    return pd.read_parquet(p)\n",
            "tlcgcnn/cells.py": (
                "from typing import TYPE_CHECKING\nfrom tlcgcnn import io\n"
                "if TYPE_CHECKING:\n    import torch\n"
                "def gnn():\n    from tlcgcnn.train import run\n    return run()\n"
                "def base():\n    io.read('x')\n    from tlcgcnn import metrics\n    return metrics.score()\n"
            ),
            "tlcgcnn/train.py": "import torch\n\ndef run():\n    pass\n",
            "tlcgcnn/metrics.py": "def score():\n    import sklearn.metrics\n\ndef other():\n    import gemmi\n",
            "tlcgcnn/sub/__init__.py": "import requests\n",
            "tlcgcnn/sub/deep.py": "def f():\n    if True:\n        for _ in []:\n            import yaml\n",
        },
    )
    src = tmp_path / "src"
    scripts = tmp_path / "scripts"
    _write(
        scripts,
        {
            "base.py": "from tlcgcnn.cells import base\nbase()\n",
            "gnn.py": "import sys\nfrom tlcgcnn.cells import gnn\ngnn()\n",
            "deep.py": "import tlcgcnn.sub.deep as d\nd.f()\n",
            "io_only.py": "from tlcgcnn import io\n",
        },
    )
    base = ImportClosure(src).closure(scripts / "base.py")[0]
    assert set(base) == {"pandas", "pyarrow", "sklearn"}, base  # not torch (other function, TYPE_CHECKING), not gemmi
    gnn = ImportClosure(src).closure(scripts / "gnn.py")[0]
    assert set(gnn) == {"pandas", "torch"}, gnn  # io.read (parquet) only reached from base()
    deep = ImportClosure(src).closure(scripts / "deep.py")[0]
    assert set(deep) == {"requests", "yaml"}, deep  # package __init__ runs; nested lazy import
    io_only = ImportClosure(src).closure(scripts / "io_only.py")[0]
    assert set(io_only) == {"pandas"}, io_only  # io.read is never called: no pyarrow


def test_closure_of_a_module_used_as_a_value_includes_all_its_functions(tmp_path: Path) -> None:
    _write(
        tmp_path / "src",
        {
            "tlcgcnn/__init__.py": "",
            "tlcgcnn/a.py": "def f():\n    import mp_api\n",
            "tlcgcnn/b.py": "def g():\n    import qmpy_rester\n",
            "tlcgcnn/run.py": (
                "from tlcgcnn import a, b\nSOURCES = {'a': a, 'b': b}\n\ndef go(k):\n    return SOURCES[k].f()\n"
            ),
        },
    )
    _write(tmp_path, {"s.py": "from tlcgcnn.run import go\ngo('a')\n"})
    got = ImportClosure(tmp_path / "src").closure(tmp_path / "s.py")[0]
    assert set(got) == {"mp_api", "qmpy_rester"}, got


def test_rule_scripts_are_found_by_the_parser() -> None:
    rules = {r[0]: r for r in workflow_rules()}
    assert rules["ingest"][1:3] == ("envs/core.yaml", "workflow/scripts/ingest.py")
    assert rules["embedded_subset"][1:3] == ("envs/embedded.yaml", "workflow/scripts/embedded.py")
    assert "gemmi" in script_imports(rules["embedded_subset"][2])
    assert rules["model_card"][1:3] == ("envs/cards.yaml", "workflow/scripts/model_card.py")
    assert "torch" in script_imports(rules["model_card"][2]) and "matplotlib" in script_imports(rules["model_card"][2])
