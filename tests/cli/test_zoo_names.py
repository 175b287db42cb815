"""The model zoo by name (tlcgcnn.zoo): the published models are listed with what they predict,
their units, test MAE and interval coverage; a name, a checkpoint file, a zoo folder or a
fine-tuning cell folder resolves to its checkpoints; an unknown name says which names exist;
``TLCGCNN_ZOO`` comes first; the module imports without torch. The wheel built from the
repository ships the zoo (``setup.py``; the e2e test builds it)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

from tlcgcnn import zoo

ZOO = ROOT / "resources" / "pretrained"
NAMES = ["mp2018-ef", "mp2018-eg", "mp2018-hse_gap", "mp2018-log_kvrh", "mp2018-mt"]


@pytest.fixture(autouse=True)
def _no_user_zoo(monkeypatch):
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)


def test_list_models_lists_the_published_zoo_with_units_and_test_mae():
    models = {m.name: m for m in zoo.list_models()}
    assert sorted(models) == NAMES
    ef, k, mt = models["mp2018-ef"], models["mp2018-log_kvrh"], models["mp2018-mt"]
    assert ef.properties == ("formation_energy_per_atom",) and ef.unit == "eV/atom" and ef.seeds == 1
    assert k.predicts == "k_vrh" and k.unit == "log10(k_vrh / GPa)" and k.seeds == 3 and k.task == "regression"
    assert mt.properties == ("formation_energy_per_atom", "band_gap", "efermi") and mt.unit == "eV/atom, eV, eV"
    for m in models.values():
        card = json.loads((ZOO / m.name / "card.json").read_text())
        assert m.folder == ZOO / m.name and m.files == tuple(ZOO / m.name / f for f in card["files"])
        assert m.train_size == card["training"][0]["n_train"] and m.train_size > 1000
        expected = (card["test"].get("ensemble") or {}).get("mae", card["test"]["mae_mean"])
        assert m.test_mae == pytest.approx(expected) and m.test_mae > 0
        assert m.calibration and set(m.coverage()) == set(m.properties)
        assert m.data_source == "mp2018_36737.csv.gz" and "CC-BY 4.0" in m.licence
    assert k.test_mae == pytest.approx(0.05184, abs=1e-4)  # the seeds' mean prediction, not one seed's
    assert set(mt.test_metrics) == set(mt.properties)


def test_format_table_shows_each_model_with_units_mae_seeds_and_coverage():
    text = zoo.format_table(zoo.list_models())
    lines = text.splitlines()
    assert "predicts" in lines[0] and "test MAE" in lines[0] and "seeds" in lines[0] and "coverage" in lines[0]
    assert len(lines) == 2 + len(NAMES)
    row = next(line for line in lines if line.startswith("mp2018-log_kvrh"))
    assert "log10(k_vrh / GPa)" in row and "1,534" in row and "0.0518 log10 units" in row and "(n = 1,479)" in row
    assert "formation_energy_per_atom [eV/atom]" in text and " %" in row
    assert "no published model" in zoo.format_table([])


def test_resolve_a_name_a_checkpoint_and_a_zoo_folder():
    files = zoo.resolve("mp2018-log_kvrh")
    assert files == [ZOO / "mp2018-log_kvrh" / f"model_s{s}.pt" for s in (0, 1, 2)]
    one = ZOO / "mp2018-ef" / "model_s0.pt"
    assert zoo.resolve(one) == [one] and zoo.resolve(str(one)) == [one]
    assert zoo.resolve(ZOO / "mp2018-hse_gap") == [ZOO / "mp2018-hse_gap" / f"model_s{s}.pt" for s in (0, 1, 2)]
    assert zoo.get("mp2018-mt").files == (ZOO / "mp2018-mt" / "model_s0.pt",)


def test_resolve_a_fine_tuning_cell_folder_sorted_by_seed(tmp_path):
    cell = tmp_path / "results" / "run" / "finetune" / "log_kvrh" / "nall" / "ef_head"
    for seed, src in ((10, 2), (0, 0), (2, 1)):  # seed 10 sorts after 2 (numbers, not text)
        (cell / "runs" / f"s{seed}").mkdir(parents=True)
        shutil.copyfile(ZOO / "mp2018-log_kvrh" / f"model_s{src}.pt", cell / "runs" / f"s{seed}" / "model.pt")
    (cell / "runs" / "notes").mkdir()
    assert zoo.resolve(cell) == [cell / "runs" / f"s{s}" / "model.pt" for s in (0, 2, 10)]
    assert zoo.card_for(cell / "runs" / "s0" / "model.pt") is None  # a cell carries no model card
    assert zoo.card_for(ZOO / "mp2018-log_kvrh" / "model_s1.pt")["name"] == "mp2018-log_kvrh"


def test_unknown_names_and_paths_are_refused_with_the_known_names(tmp_path):
    known = "known names: " + ", ".join(NAMES)
    with pytest.raises(zoo.ZooError) as err:
        zoo.resolve("mp2018-nope")
    msg = str(err.value)
    assert msg == f"mp2018-nope: not a model name, checkpoint file or model folder; {known}" and "\n" not in msg
    with pytest.raises(zoo.ZooError, match=f"^mp2018-nope: no published model of that name; {known}$"):
        zoo.get("mp2018-nope")
    with pytest.raises(zoo.ZooError, match=r"gone\.pt: no such checkpoint file"):
        zoo.resolve(tmp_path / "gone.pt")
    (tmp_path / "notes.txt").write_text("x")  # an existing file goes on to the checkpoint loader, which names it
    assert zoo.resolve(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.ZooError, match=r"empty: a folder without model_s<seed>\.pt or runs/s<seed>/model\.pt"):
        zoo.resolve(tmp_path / "empty")


def test_the_user_zoo_comes_first_and_a_bad_one_is_named(tmp_path, monkeypatch):
    mine = tmp_path / "my_zoo"
    (mine / "mp2018-ef").mkdir(parents=True)
    shutil.copyfile(ZOO / "mp2018-ef" / "model_s0.pt", mine / "mp2018-ef" / "model_s0.pt")
    card = json.loads((ZOO / "mp2018-ef" / "card.json").read_text())
    card["label"] = "my own ef"
    (mine / "mp2018-ef" / "card.json").write_text(json.dumps(card))
    (mine / "broken").mkdir()
    (mine / "broken" / "card.json").write_text("{not json")
    monkeypatch.setenv(zoo.ENV_VAR, str(mine))
    assert zoo.zoo_dirs()[0] == mine and ZOO in zoo.zoo_dirs()
    with pytest.raises(zoo.ZooError, match=r"broken/card\.json: unreadable model card"):
        zoo.list_models()
    shutil.rmtree(mine / "broken")
    models = {m.name: m for m in zoo.list_models()}
    assert sorted(models) == NAMES and models["mp2018-ef"].label == "my own ef"  # the first folder wins
    assert zoo.resolve("mp2018-ef") == [mine / "mp2018-ef" / "model_s0.pt"]
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(zoo.ZooError, match=r"TLCGCNN_ZOO=.*nowhere: not a folder"):
        zoo.list_models()


def test_zoo_and_calibration_import_without_torch():
    code = (
        "import sys, tlcgcnn.zoo, tlcgcnn.analysis.calibration; "
        "tlcgcnn.zoo.list_models(); assert 'torch' not in sys.modules"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr


def _can_build_wheels() -> str | None:
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed (pip wheel --no-build-isolation needs it)"
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 70 and importlib.util.find_spec("wheel") is None:
        return f"setuptools {setuptools.__version__} without the wheel package cannot build wheels"
    return None


@pytest.mark.e2e
def test_the_wheel_ships_the_zoo(tmp_path):
    reason = _can_build_wheels()
    if reason:
        pytest.skip(reason)
    src = tmp_path / "src_tree"  # a copy: an in-tree build would leave build/ and egg-info in the repository
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copyfile(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "_zoo")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    shutil.copytree(ZOO, src / "resources" / "pretrained", ignore=shutil.ignore_patterns("parity.png"))
    out = tmp_path / "whl"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (wheel,) = out.glob("tlcgcnn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tlcgcnn/_zoo/mp2018-ef/model_s0.pt" in names
    for folder in sorted(p for p in ZOO.iterdir() if (p / "card.json").is_file()):
        shipped = {"card.json", "card.md", *(f.name for f in folder.glob("model_s*.pt"))}
        assert {f"tlcgcnn/_zoo/{folder.name}/{f}" for f in shipped} <= names, folder.name
    assert not any(n.endswith("parity.png") or "/heldout/" in n for n in names)
    assert "tlcgcnn/zoo.py" in names and "tlcgcnn/analysis/calibration.py" in names

    # installed from the wheel alone (no repository beside it), a published model predicts by name
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    from pymatgen.core import Lattice, Structure

    cif = tmp_path / "nacl.cif"
    Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(cif))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import tlcgcnn; "
        "assert tlcgcnn.__file__.startswith(sys.argv[1]), tlcgcnn.__file__; "
        "df = tlcgcnn.load_model('mp2018-eg').predict(sys.argv[2]); "
        "print(df['band_gap'].iloc[0], df['band_gap_hi90'].iloc[0])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TLCGCNN_ZOO", "PYTHONPATH")}
    run = subprocess.run(
        [sys.executable, "-c", code, str(site), str(cif)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    gap, hi = map(float, run.stdout.split())
    assert hi > gap
