"""tlcgcnn.config: the one source of defaults (the schema and the package's dataclasses read
it), validation, and the resolved runs."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from tlcgcnn import config as C
from tlcgcnn.features.featurize import FeaturizeParams

SCHEMA_FILE = ROOT / "config" / "schema" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_FILE.read_text())


def _schema_defaults(schema: dict[str, Any], node: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    """Every ``default:`` of a schema, keyed like tlcgcnn.config.defaults() ($refs followed)."""
    if "default" in node:
        out[prefix] = node["default"]
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    for key, child in node.get("properties", {}).items():
        _schema_defaults(schema, child, f"{prefix}.{key}" if prefix else key, out)
    if isinstance(node.get("items"), dict):
        _schema_defaults(schema, node["items"], f"{prefix}[]", out)
    if isinstance(node.get("additionalProperties"), dict):
        _schema_defaults(schema, node["additionalProperties"], f"{prefix}.*", out)


def _without_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def test_the_schema_file_holds_no_default():
    """tlcgcnn.config is the one source of defaults: the schema file repeats none of them."""
    found: dict[str, Any] = {}
    _schema_defaults(SCHEMA, SCHEMA, "", found)
    assert found == {}
    assert not re.search(r"^\s*default:|[{,]\s*default:", SCHEMA_FILE.read_text(), re.MULTILINE)


def test_the_generated_schema_has_every_default_in_its_place():
    """``schema_with_defaults``: the file's schema plus a ``default:`` on each option, equal
    (value and type) to tlcgcnn.config.defaults(), and ``{}`` on each optional section."""
    import jsonschema

    full = C.schema_with_defaults()
    got: dict[str, Any] = {}
    _schema_defaults(full, full, "", got)
    sections = {s: {} for s in C.SECTIONS if s != "dataset"}  # dataset is required
    want = {**sections, **C.defaults()}
    assert set(got) == set(want), (sorted(set(want) - set(got)), sorted(set(got) - set(want)))
    differ = {k: (want[k], got[k]) for k in want if got[k] != want[k] or type(got[k]) is not type(want[k])}
    assert not differ, differ
    assert _without_defaults(full) == SCHEMA  # nothing else added or changed
    jsonschema.Draft202012Validator.check_schema(full)
    for name in ("config", "mp500", "paper-small", "zoo"):  # the shipped configs are valid against it too
        jsonschema.Draft202012Validator(full).validate(yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text()))


def test_the_generated_schema_refuses_a_default_without_its_option(tmp_path):
    """A default the schema has no option for, or one on a $defs entry that two options share
    (it would claim the default for both), stops the generator."""
    (tmp_path / "config.schema.yaml").write_text(yaml.safe_dump(SCHEMA))
    C.schema_with_defaults(tmp_path)  # the file as it is: fine
    broken = copy.deepcopy(SCHEMA)
    del broken["$defs"]["train"]["properties"]["patience"]
    (tmp_path / "config.schema.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(C.ConfigError, match=r"defaults with no option in .*\['train.patience'\]"):
        C.schema_with_defaults(tmp_path)
    shared = copy.deepcopy(SCHEMA)
    shared["properties"]["pretrain"]["items"]["properties"]["train"] = {"$ref": "#/$defs/train"}
    (tmp_path / "config.schema.yaml").write_text(yaml.safe_dump(shared))
    with pytest.raises(C.ConfigError, match=r"several options share .*'train.epochs'"):
        C.schema_with_defaults(tmp_path)


def test_tlcgcnn_config_prints_the_schema_and_the_defaults():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "tlcgcnn.cli.main", "config", "schema"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert json.loads(out) == C.schema_with_defaults()  # JSON: also what YAML readers and editors read
    assert yaml.safe_load(out) == C.schema_with_defaults()
    out = subprocess.run(
        [sys.executable, "-m", "tlcgcnn.cli.main", "config", "defaults"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    printed = dict(line.split(": ", 1) for line in out.splitlines())
    assert {k: json.loads(v) for k, v in printed.items()} == C.defaults()


def _bare(**extra: Any) -> dict[str, Any]:
    """A config that sets only what has no default (and ``extra``): every other option is left out."""
    return {
        "name": "bare",
        "dataset": {"path": "data.csv"},
        "finetune": {
            "targets": [{"name": "gap", "property": "band_gap"}],
            "sizes": ["all"],
            "seeds": [0],
            "modes": {"scratch": {}},
        },
        **extra,
    }


def _with_entries() -> dict[str, Any]:
    """_bare with one entry of each list (a pretrain source, a mode from it, an external set, a
    published model, a claim), each setting only its required keys."""
    raw = _bare(
        pretrain=[{"name": "ef", "property": "formation_energy_per_atom"}],
        external=[{"name": "ext", "path": "ext.csv", "property": "band_gap"}],
        zoo={"models": [{"name": "gap-model", "target": "gap", "mode": "tl"}]},
        report={
            "claims": [
                {
                    "id": "c",
                    "paper": "TL-CGCNN",
                    "claim": "x",
                    "paper_value": "y",
                    "target": "gap",
                    "size": "all",
                    "mode": "tl",
                }
            ]
        },
    )
    raw["finetune"]["modes"]["tl"] = {"pretrained": "ef"}
    return raw


def _resolved(key: str, plain: C.Config, entries: C.Config, sampled: C.Config) -> Any:
    """What the resolved config holds for the option ``key`` (a defaults() key): sections and
    top-level options of ``plain``, list entries of ``entries``, the sample of ``sampled``."""
    head, _, rest = key.partition(".")
    option = key.rsplit(".", 1)[-1]
    if head == "dataset" and rest.startswith("sample."):
        return sampled.dataset.sample[option]  # type: ignore[index]
    if head in C.SECTIONS and "." not in rest:
        return getattr(getattr(plain, head), rest)
    if key.startswith("finetune.targets[]."):
        return entries.as_dict()["finetune"]["targets"][0][option]
    if key.startswith("finetune.modes.*."):
        return getattr(entries.modes["scratch"], option)
    if key in ("finetune.baseline", "finetune.group_seeds"):
        return getattr(plain, option)
    if key.startswith("pretrain[]."):
        src = entries.pretrain_source("ef")
        if option == "model":  # the entry's variant name; none: the source has the base model
            return None if src.model == entries.model_config(None) else src.model
        return getattr(src.target, option) if option in ("transform", "subset") else getattr(src, option)
    if key.startswith("external[]."):
        return getattr(entries.external_set("ext"), option)
    if key.startswith("zoo.models[]."):
        return entries.zoo.models[0][option]
    if key.startswith("report.claims[]."):
        return entries.report.claims[0][option]
    top = {
        "regenerate_embedded": plain.regenerate_embedded,
        "model_variants": plain.model_variants,
        "pretrain": [s.as_params() for s in plain.pretrain_sources()],
        "external": plain.external_names,
        "properties": plain.properties,
    }
    if key in top:
        return top[key]
    raise KeyError(f"no resolved value known for the default {key!r}: add it to _resolved")


def test_every_option_left_out_resolves_to_the_modules_default():
    plain, entries = C.load(_bare()), C.load(_with_entries())
    sampled = C.load(_bare(dataset={"path": "data.csv", "sample": {"n": 5}}))
    assert plain.dataset.sample is None  # absent: no subsampling
    for key, default in C.defaults().items():
        got = _resolved(key, plain, entries, sampled)
        assert got == default and type(got) is type(default), (key, got, default)


def test_the_packages_dataclasses_take_the_config_modules_defaults():
    """ModelConfig, TrainConfig and FeaturizeParams (direct, non-workflow use) read their
    defaults from tlcgcnn.config; their fields, and so the checkpoints' and graph caches' keys,
    are what they were."""
    from dataclasses import asdict

    from tlcgcnn.nn import ModelConfig
    from tlcgcnn.train.loop import TrainConfig

    assert issubclass(TrainConfig, C.TrainSettings) and asdict(TrainConfig()) == asdict(C.TrainSettings())
    model = ModelConfig().to_dict()
    assert list(model) == [
        "kind",
        "atom_fea_len",
        "n_conv",
        "h_fea_len",
        "n_h",
        "radius",
        "gaussian_step",
        "n_out",
        "orig_atom_fea_len",
    ]
    # task_heads is left out at its default (0), so a checkpoint and a run key of the shared-output
    # model are what they were before task heads existed
    assert {k: model[k] for k in asdict(C.ModelSettings()) if k != "task_heads"} == {
        k: v for k, v in asdict(C.ModelSettings()).items() if k != "task_heads"
    }
    assert C.ModelSettings().task_heads == 0 and ModelConfig(task_heads=2).to_dict()["task_heads"] == 2
    assert "task_heads" not in C.load(_bare()).model_config()
    assert C.load(_bare(model={"task_heads": 1})).model_config()["task_heads"] == 1
    assert (model["radius"], model["n_out"], model["orig_atom_fea_len"]) == (C.FeaturizeSettings().radius, 1, 92)
    assert ModelConfig.from_dict(C.load(_bare()).model_config()) == ModelConfig()
    assert FeaturizeParams() == C.featurize_params(asdict(C.FeaturizeSettings()))
    assert FeaturizeParams().key() == "7732ddcdb1c9"  # the default graph cache keeps its folder name


# config/README.md's tables: heading (or "Each of" line) -> the defaults() prefix of its options
README_TABLES = {
    "## Top level": "",
    "## `dataset`": "dataset.",
    "### Download settings": None,  # config/schema/download.schema.yaml, tlcgcnn.data.download
    "## `embedded`": "embedded.",
    "## `zoo`": "zoo.",
    "Each of `models`": "zoo.models[].",
    "## `report`": "report.",
    "Each of `claims`": "report.claims[].",
    "## `properties`": None,  # a property's declaration: tlcgcnn.data.properties
    "## `split`": "split.",
    "## `featurize`": "featurize.",
    "## `model`": "model.",
    "## `train`": "train.",
    "## `pretrain`": "pretrain[].",
    "## `finetune`": "finetune.",
    "Each of `targets`": "finetune.targets[].",
    "Each of `modes`": "finetune.modes.*.",
    "## `external`": "external[].",
    "## `resources`": "resources.",
}


def readme_defaults(text: str) -> dict[str, str]:
    """The default column of config/README.md's option tables, keyed like defaults()."""
    out: dict[str, str] = {}
    prefix: str | None = None
    for line in text.splitlines():
        start = next((s for s in README_TABLES if line.startswith(s)), None)
        if start is not None:
            prefix = README_TABLES[start]
        row = re.match(r"^\| `([^`]+)` \| ([^|]*) \|", line)
        if row and prefix is not None:
            out[prefix + row.group(1)] = row.group(2).strip()
    return out


def test_config_readme_states_the_modules_defaults():
    """A documentation check: each default config/README.md's tables give is defaults()'s
    (``dataset.sample``'s, written in the text, too), and none is left out."""
    text = (ROOT / "config" / "README.md").read_text()
    documented = readme_defaults(text)
    sample = {"dataset.sample.seed", "dataset.sample.keep"}
    wrong = {}
    for key, default in C.defaults().items():
        if key in sample:
            continue
        cell = documented.get(key, "<not in a table>")
        if not (re.fullmatch(r"`[^`]+`", cell) and yaml.safe_load(cell.strip("`")) == default):
            wrong[key] = (cell, default)
    assert not wrong, f"config/README.md's default differs from tlcgcnn.config.defaults(): {wrong}"
    assert f"`seed` (default {C.SAMPLE_DEFAULTS['seed']})" in text and C.SAMPLE_DEFAULTS["keep"] == {}


def test_readme_defaults_are_read_from_each_table():
    text = "## `train`: training\n\n| option | default | meaning |\n|---|---|---|\n| `lr` | `0.5` | rate |\n"
    text += '\nEach of `modes` (a name):\n\n| `freeze` | `2` | layers |\n## `properties`\n| `unit` | `""` | u |\n'
    assert readme_defaults(text) == {"train.lr": "`0.5`", "finetune.modes.*.freeze": "`2`"}


def _cfg(**changes: Any) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "config" / "mp500.yaml").read_text())
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = raw
        for p in path:
            node = node[p]
        node[last] = value
    return raw


def test_resolved_runs_of_mp500():
    cfg = C.load(_cfg())
    assert cfg.target_names == ["gap_nonmetal"] and cfg.pretrain_names == ["ef_all"]
    src = cfg.pretrain_source("ef_all")
    assert src.size == "all" and src.seed == 0
    assert src.model == {
        "kind": "cgcnn",
        "atom_fea_len": 64,
        "n_conv": 3,
        "h_fea_len": 128,
        "n_h": 1,
        "gaussian_step": 0.2,
        "radius": 8.0,
    }
    assert src.train["epochs"] == 60 and src.train["eval_batch_size"] == 512
    cells = cfg.cells()
    assert [(c.size, c.mode.name) for c in cells] == [(n, m) for n in (25, 50, 100) for m in ("scratch", "transfer")]
    t = cells[1]
    assert (
        t.seeds == [0, 1, 2] and t.pretrain is not None and t.pretrain.name == "ef_all" and t.mode.family == "transfer"
    )
    assert t.target.as_dict() == {
        "name": "gap_nonmetal",
        "property": "band_gap",
        "transform": "none",
        "subset": "nonmetal",
        "task": "regression",
        "properties": None,
        "weights": None,
    }
    assert cfg.cell("gap_nonmetal", "25", "transfer") == cfg.cell("gap_nonmetal", 25, "transfer")
    with pytest.raises(C.ConfigError, match="no fine-tuning cell target=gap_nonmetal size=26"):
        cfg.cell("gap_nonmetal", 26, "scratch")
    assert cfg.split_spec("ef_all") == {"name": "ef_all", "property": "formation_energy_per_atom", "subset": "all"}
    assert cfg.graph_key() == FeaturizeParams(8.0, 12, 1.5, 16.0).key()


def test_mode_variant_reaches_the_cell_and_overrides_merge_once():
    raw = _cfg(train__threads=2)
    raw["model_variants"] = {"att": {"kind": "attention", "n_conv": 2}}
    raw["finetune"]["modes"]["attention"] = {"model": "att"}
    raw["finetune"]["train"] = {"epochs": 7}
    raw["featurize"]["radius"] = 6.0
    raw["finetune"]["sizes"] = ["all"]
    cell = C.load(raw).cell("gap_nonmetal", "all", "attention")
    assert (
        cell.model is not None
        and cell.model["kind"] == "attention"
        and cell.model["n_conv"] == 2
        and cell.model["radius"] == 6.0
    )
    assert cell.train is not None and cell.train["epochs"] == 7 and cell.train["threads"] == 2 and cell.size == "all"


def test_seeds_large_and_per_target_sizes():
    raw = _cfg()
    raw["finetune"].update(seeds_large=[0], large_from=50)
    raw["finetune"]["targets"][0]["sizes"] = [25, 100, "all"]
    cfg = C.load(raw)
    assert cfg.target_sizes("gap_nonmetal") == [25, 100, "all"]
    assert [cfg.cell("gap_nonmetal", n, "scratch").seeds for n in (25, 100, "all")] == [[0, 1, 2], [0], [0]]


@pytest.mark.parametrize("size", ["al", "2.5", "", None])
def test_parse_size_rejects(size):
    with pytest.raises(C.ConfigError, match="neither an integer nor 'all'"):
        C.parse_size(size)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["finetune"]["modes"]["transfer"].update(pretrained="nope"), "is not a pretrain name"),
        (lambda r: r["finetune"]["modes"]["scratch"].update(model="nope"), "is not in model_variants"),
        (lambda r: r["finetune"].update(baseline="nope"), "finetune.baseline 'nope'"),
        (lambda r: r["finetune"]["targets"][0].update(modes=["nope"]), "unknown modes"),
        (lambda r: r["finetune"]["targets"][0].update(name="ef_all"), "used both as a pretrain and a finetune"),
        (lambda r: r["pretrain"][0].update(properties=["band_gap", "efermi"]), "properties must start with property"),
        (
            lambda r: r["finetune"]["modes"].update(pls={"estimator": "pls", "pretrained": "ef_all"}),
            "baseline mode pls cannot",
        ),
        (lambda r: r["train"].update(epochz=3), "'epochz' was unexpected"),
        (lambda r: r["train"].update(epochs="many"), "train.epochs: 'many' is not of type 'integer'"),
    ],
)
def test_bad_configs_fail_with_the_reason(mutate, message):
    raw = _cfg()
    mutate(raw)
    with pytest.raises(C.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        C.load(raw)


def test_every_shipped_config_loads():
    for path in sorted((ROOT / "config").glob("*.yaml")):
        if path.name.startswith("download"):
            continue
        cfg = C.load(path)
        assert cfg.cells(), path


def test_importable_without_torch():
    code = "import sys, tlcgcnn.config as c; c.load(sys.argv[1]).cells(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "config" / "mp500.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src")},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_no_rule_reads_raw_config_or_holds_lambdas():
    for smk in sorted(Path(ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        assert "lambda" not in text, smk
        if smk.name != "common.smk":
            assert "config[" not in text and "config.get" not in text, smk


def _config_names(text: str) -> list[tuple[int, str]]:
    """Each use of the name ``config`` in Python-like code, with its line (comments, strings
    and the module name ``tlcgcnn.config`` left out)."""
    import io
    import tokenize

    toks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type != tokenize.NL]
    return [
        (t.start[0], t.line.strip())
        for i, t in enumerate(toks)
        if t.type == tokenize.NAME
        and t.string == "config"
        and [x.string for x in toks[max(i - 2, 0) : i]] != ["tlcgcnn", "."]
    ]


def test_only_tlcgcnn_config_reads_the_raw_config():
    """The workflow hands the raw ``config`` to tlcgcnn.config alone (common.smk's load; a
    script's resolve): every other consumer (figures, multi-task pairs, ...) gets the typed one."""
    uses = {
        f"{path.relative_to(ROOT)}:{n}": line
        for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
        for n, line in _config_names(path.read_text())
    }
    assert list(uses.values()) == ['CFG = _load_config(config, Path(workflow.basedir) / "config" / "schema")'], uses
    for script in sorted((ROOT / "workflow" / "scripts").glob("*.py")):
        for _, line in _config_names(script.read_text()):
            assert "resolve(snakemake.config)" in line, (script.name, line)
    text = "from tlcgcnn.config import load\nx = f(config)  # config\ny = 'config'\nc = snakemake.config\n"
    assert _config_names(text) == [(2, "x = f(config)  # config"), (4, "c = snakemake.config")]


def test_mode_protocol_overrides_reach_the_cell_params():
    """finetune.modes.<m>.train merges after finetune.train; backbone_lr_scale reaches the
    mode's params; a mode without them keeps the params it had before they existed."""
    raw = _cfg()
    raw["finetune"]["train"] = {"epochs": 7, "lr": 0.002}
    plain = C.load(raw).cell("gap_nonmetal", 25, "transfer").as_params()
    raw["finetune"]["modes"]["slow"] = {
        "pretrained": "ef_all",
        "reinit": "head",
        "backbone_lr_scale": 0.1,
        "train": {"lr": 0.0003, "warmup_epochs": 2, "patience": 30},
    }
    cfg = C.load(raw)
    cell = cfg.cell("gap_nonmetal", 25, "slow")
    assert cell.train is not None and (
        cell.train["lr"],
        cell.train["warmup_epochs"],
        cell.train["patience"],
        cell.train["epochs"],
    ) == (0.0003, 2, 30, 7)
    params = cell.as_params()
    assert params["mode"]["backbone_lr_scale"] == 0.1 and params["mode"]["train"] == {
        "lr": 0.0003,
        "warmup_epochs": 2,
        "patience": 30,
    }
    assert params["train"]["lr"] == 0.0003
    # the other modes: unchanged settings, no protocol keys in their params (same run keys)
    assert cfg.cell("gap_nonmetal", 25, "transfer").as_params() == plain
    assert "backbone_lr_scale" not in plain["mode"] and "train" not in plain["mode"] and plain["train"]["lr"] == 0.002
    assert cfg.as_dict()["finetune"]["modes"]["slow"]["backbone_lr_scale"] == 0.1


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ({"backbone_lr_scale": 0.1}, "backbone_lr_scale: only a transfer mode"),
        ({"estimator": "rf", "train": {"lr": 0.1}}, "baseline mode m (rf) has no training loop"),
        ({"pretrained": "ef_all", "backbone_lr_scale": 0}, "backbone_lr_scale: 0 is not a positive factor"),
        (
            {"pretrained": "ef_all", "train": {"lr_scale": 0.1}},
            "finetune.modes.m.train: unknown training options ['lr_scale']",
        ),
        ({"pretrained": "ef_all", "train": {"threads": 4}}, "unknown training options ['threads']"),
    ],
)
def test_bad_mode_protocols_fail_with_the_reason(mode, message):
    raw = _cfg()
    raw["finetune"]["modes"]["m"] = mode
    with pytest.raises(C.ConfigError, match=re.escape(message)):
        C.resolve(raw)  # the module's own checks (a workflow job's copy skips the schema)
    with pytest.raises(C.ConfigError, match="finetune.modes.m"):
        C.load(raw)  # the schema or the module: either names the key


def test_run_records_carry_the_resolved_protocol():
    from tlcgcnn.train.finetune import mode_fields, train_fields

    raw = _cfg()
    raw["finetune"]["modes"]["slow"] = {
        "pretrained": "ef_all",
        "reinit": "head",
        "backbone_lr_scale": 0.1,
        "train": {"lr": 0.0003, "warmup_epochs": 2},
    }
    cfg = C.load(raw)

    def record(mode: str) -> dict[str, Any]:
        cell = cfg.cell("gap_nonmetal", 25, mode)
        return {**mode_fields(cell, 100), **train_fields(cell)}

    slow, transfer, scratch = record("slow"), record("transfer"), record("scratch")
    assert (slow["backbone_lr_scale"], slow["lr"], slow["warmup_epochs"], slow["epochs"]) == (
        0.1,
        0.0003,
        2,
        cfg.train.epochs,
    )
    assert (
        transfer["backbone_lr_scale"] == 1.0 and transfer["lr"] == cfg.train.lr and scratch["backbone_lr_scale"] is None
    )


# --------------------------------------------------------------------------- train_pool
def _with_pool_all_target(raw: dict[str, Any]) -> dict[str, Any]:
    """mp500 plus a second non-metal target whose modes include train_pool: all ones."""
    raw = copy.deepcopy(raw)
    raw["finetune"]["modes"].update(
        scratch_all={"train_pool": "all"}, rf={"estimator": "rf"}, rf_all={"estimator": "rf", "train_pool": "all"}
    )
    raw["finetune"]["targets"].append(
        {
            "name": "gap_nm_all",
            "property": "band_gap",
            "subset": "nonmetal",
            "modes": ["scratch", "scratch_all", "rf", "rf_all"],
        }
    )
    return raw


def test_train_pool_all_changes_only_its_own_modes_and_targets_split():
    """Adding train_pool: all modes and a target that runs them leaves every other split spec
    and every other cell's params as they were (byte for byte: Snakemake reruns a job whose
    params change); the target's spec asks for pool_all, its modes' params say train_pool."""
    before_raw = _cfg()
    before_raw["finetune"]["targets"][0]["modes"] = ["scratch", "transfer"]
    before = C.load(before_raw)
    after = C.load(_with_pool_all_target(before_raw))
    for name in before.split_names():
        assert json.dumps(after.split_spec(name)) == json.dumps(before.split_spec(name)), name
    assert before.split_spec("gap_nonmetal") == {"name": "gap_nonmetal", "property": "band_gap", "subset": "nonmetal"}
    for c in before.cells():
        assert json.dumps(after.cell(c.target.name, c.size, c.mode.name).as_params()) == json.dumps(c.as_params())
    assert after.split_spec("gap_nm_all") == {
        "name": "gap_nm_all",
        "property": "band_gap",
        "subset": "nonmetal",
        "pool_all": True,
    }
    assert (
        after.pool_all_modes("gap_nm_all") == ["scratch_all", "rf_all"] and after.pool_all_modes("gap_nonmetal") == []
    )
    scratch, scratch_all = (after.cell("gap_nm_all", 25, m).as_params() for m in ("scratch", "scratch_all"))
    assert "train_pool" not in scratch["mode"] and scratch_all["mode"]["train_pool"] == "all"
    assert {k: v for k, v in scratch_all["mode"].items() if k not in ("name", "train_pool")} == {
        k: v for k, v in scratch["mode"].items() if k != "name"
    }
    assert (scratch_all["model"], scratch_all["train"], scratch_all["seeds"]) == (
        scratch["model"],
        scratch["train"],
        scratch["seeds"],
    )
    assert after.cell("gap_nm_all", 25, "rf_all").as_params()["mode"]["train_pool"] == "all"
    # an explicit train_pool: subset is the default: the mode's params are those of a mode without it
    raw = copy.deepcopy(before_raw)
    raw["finetune"]["modes"]["scratch"] = {"train_pool": "subset"}
    assert json.dumps(C.load(raw).cell("gap_nonmetal", 25, "scratch").as_params()) == json.dumps(
        before.cell("gap_nonmetal", 25, "scratch").as_params()
    )
    assert (
        "train_pool" not in after.as_dict()["finetune"]["modes"]["scratch"]
        and after.as_dict()["finetune"]["modes"]["rf_all"]["train_pool"] == "all"
    )
    # pretraining leaves out the test sets of the targets with a transfer mode only
    assert after.transfer_target_names == before.transfer_target_names == ["gap_nonmetal"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r["finetune"]["targets"].append(
                {"name": "gap_all", "property": "band_gap", "modes": ["scratch", "scratch_all"]}
            ),
            "finetune.modes.scratch_all.train_pool: all on target gap_all, whose subset is all: ",
        ),
        (
            lambda r: r["finetune"]["targets"].append({"name": "gap_all", "property": "band_gap", "subset": "all"}),
            "finetune.modes.rf_all.train_pool: all on target gap_all, whose subset is all "
            "(a target without `modes` runs every mode: list its modes)",
        ),
    ],
)
def test_train_pool_all_on_a_target_of_every_subset_is_refused(mutate, message):
    raw = _with_pool_all_target(_cfg())
    raw["finetune"]["targets"][0]["modes"] = ["scratch", "transfer"]
    mutate(raw)
    with pytest.raises(C.ConfigError, match=re.escape(message)):
        C.load(raw)


def test_unknown_train_pool_is_refused():
    raw = _cfg()
    raw["finetune"]["modes"]["m"] = {"train_pool": "metal"}
    with pytest.raises(
        C.ConfigError, match=re.escape("finetune.modes.m.train_pool: 'metal' is not one of ['subset', 'all']")
    ):
        C.load(raw)
    with pytest.raises(C.ConfigError, match=re.escape("finetune.modes.m.train_pool: 'metal' is not subset or all")):
        C.resolve(raw)


def test_run_records_say_train_pool_only_when_set():
    from tlcgcnn.train.finetune import mode_fields

    cfg = C.load(_with_pool_all_target(_cfg()))
    fields = {m: mode_fields(cfg.cell("gap_nm_all", 25, m), None) for m in ("scratch", "scratch_all", "rf", "rf_all")}
    assert fields["scratch_all"]["train_pool"] == fields["rf_all"]["train_pool"] == "all"
    assert "train_pool" not in fields["scratch"] and "train_pool" not in fields["rf"]
    assert {k: v for k, v in fields["scratch_all"].items() if k not in ("mode", "train_pool")} == {
        k: v for k, v in fields["scratch"].items() if k != "mode"
    }


def test_paper_cpu_train_pool_additions_leave_the_other_jobs_alone():
    """config/paper-cpu.yaml's all-vs-non-metal study (hse_gap_nm with scratch_all / rf_all)
    changes no other target's split spec, no other cell's params, no source and no
    pretraining input (the test sets it leaves out): a run started before it keeps its jobs."""
    raw = yaml.safe_load((ROOT / "config" / "paper-cpu.yaml").read_text())
    cfg = C.load(raw)
    assert (
        cfg.pool_all_modes("hse_gap_nm") == ["scratch_all", "rf_all"]
        and cfg.split_spec("hse_gap_nm")["pool_all"] is True
    )
    before = copy.deepcopy(raw)
    before["finetune"]["targets"] = [t for t in raw["finetune"]["targets"] if t["name"] != "hse_gap_nm"]
    for m in ("scratch_all", "rf_all"):
        del before["finetune"]["modes"][m]
    before["report"]["claims"] = [
        c for c in raw["report"]["claims"] if c.get("target") != "hse_gap_nm"
    ]  # its claim goes with it
    old = C.load(before)
    for name in old.split_names():
        assert json.dumps(cfg.split_spec(name)) == json.dumps(old.split_spec(name)), name
    for c in old.cells():
        assert json.dumps(cfg.cell(c.target.name, c.size, c.mode.name).as_params()) == json.dumps(c.as_params())
    assert [s.as_params() for s in cfg.pretrain_sources()] == [s.as_params() for s in old.pretrain_sources()]
    assert cfg.transfer_target_names == old.target_names


def test_a_mode_and_its_source_may_differ_in_their_output_layers_only():
    """A multi-task source with task heads (model_variants) fine-tunes into the plain model:
    transfer replaces the output layers; any other difference is refused, naming the key."""
    raw = _with_entries()
    raw["model_variants"] = {"mt_heads": {"task_heads": 1}, "wide": {"h_fea_len": 256, "task_heads": 1}}
    raw["pretrain"][0]["model"] = "mt_heads"
    cfg = C.load(raw)
    cell = cfg.cell("gap", "all", "tl")
    assert cell.model is not None and "task_heads" not in cell.model
    assert cfg.model_config("mt_heads")["task_heads"] == 1
    raw["finetune"]["modes"]["tl"]["model"] = "wide"
    with pytest.raises(C.ConfigError, match=r"mode tl uses model 'wide' but .*'mt_heads': they differ in h_fea_len \("):
        C.load(raw)
