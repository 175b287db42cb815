"""tlcgcnn.config: defaults agree with the schema, validation, and the resolved runs."""

from __future__ import annotations

import copy
import json
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

SCHEMA = yaml.safe_load((ROOT / "config" / "schema" / "config.schema.yaml").read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"].removeprefix("#/").split("/")
        target: Any = SCHEMA
        for part in ref:
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _schema_defaults(node: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    """Leaf defaults of the schema, keyed like tlcgcnn.config.defaults()."""
    node = _resolve(node)
    children = node.get("properties", {})
    if "default" in node and prefix and not (children and node["default"] in ({}, [])):
        out[prefix] = node["default"]
    for key, child in children.items():
        _schema_defaults(child, f"{prefix}.{key}" if prefix else key, out)
    if isinstance(node.get("items"), dict):
        _schema_defaults(node["items"], f"{prefix}[]", out)
    if isinstance(node.get("additionalProperties"), dict) and prefix == "finetune.modes":
        _schema_defaults(node["additionalProperties"], f"{prefix}.*", out)


def test_every_default_is_the_schemas_and_vice_versa():
    schema: dict[str, Any] = {}
    _schema_defaults(SCHEMA, "", schema)
    module = C.defaults()
    assert set(module) == set(schema), (sorted(set(module) - set(schema)), sorted(set(schema) - set(module)))
    differ = {
        k: (module[k], schema[k]) for k in module if module[k] != schema[k] or type(module[k]) is not type(schema[k])
    }
    assert not differ, differ
    # the default radius is also the featurizer's (one graph cache for the default config)
    assert module["featurize.radius"] == FeaturizeParams().radius


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


def test_package_dataclass_defaults_agree_with_the_config_module():
    """TrainConfig / ModelConfig / FeaturizeParams keep defaults for direct (non-workflow)
    use; the workflow always passes complete settings, but the copies must not drift."""
    from dataclasses import asdict

    from tlcgcnn.nn import ModelConfig
    from tlcgcnn.train.loop import TrainConfig

    assert asdict(TrainConfig()) == asdict(C.TrainSettings())
    model = {k: v for k, v in ModelConfig().to_dict().items() if k not in ("n_out", "orig_atom_fea_len")}
    assert model == {**asdict(C.ModelSettings()), "radius": C.FeaturizeSettings().radius}
    f = C.FeaturizeSettings()
    assert FeaturizeParams() == C.featurize_params(asdict(f))


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
        params = cfg.cell("gap_nonmetal", 25, mode).as_params()
        return {**mode_fields(params, 100), **train_fields(params)}

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
    fields = {
        m: mode_fields(cfg.cell("gap_nm_all", 25, m).as_params(), None)
        for m in ("scratch", "scratch_all", "rf", "rf_all")
    }
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
