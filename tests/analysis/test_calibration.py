"""Calibrated 90 % intervals (tlcgcnn.analysis.calibration) and their place in the model cards
(tlcgcnn.report.cards.calibrate / publish / ``python -m tlcgcnn.report.cards calibrate``).

Synthetic Gaussian data: each method covers about 90 % of fresh draws; the binned (Mondrian)
method keeps its coverage when the new data hold more large predicted values than the
validation set, where one global half-width does not. The published zoo: every card carries
a calibration whose measured test coverage is 88–92 %. The card machinery runs on zoo
checkpoints re-labelled with small validation / test sets of the committed real-data subset."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from tlcgcnn.analysis import calibration as C
from tlcgcnn.data import ingest, table
from tlcgcnn.report import cards
from tlcgcnn.train.checkpoint import load_checkpoint, save_checkpoint
from tlcgcnn.utils import fileio as io

ZOO = ROOT / "resources" / "pretrained"
CARDS = sorted(ZOO.glob("*/card.json"))
SUBSET = ROOT / "resources" / "mp2018" / "mp2018_subset.parquet"
# split-conformal coverage given n calibration scores is Beta-distributed around the level, sd
# about sqrt(0.09 / n); the fresh draws add sqrt(0.09 / m). 4.5 sd of both:
N_CAL, N_NEW = 2000, 20000
TOL = 4.5 * math.sqrt(0.09 / N_CAL + 0.09 / N_NEW)


def test_conformal_quantile_is_the_finite_sample_rank():
    s = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.9) = 18
    assert C.conformal_quantile(s, 0.9) == 18.0
    assert C.conformal_quantile(np.arange(1.0, 10.0), 0.9) == 9.0  # n = 9: rank 9, the largest
    assert C.conformal_quantile(np.arange(1.0, 9.0), 0.9) == math.inf  # n = 8: rank 9 > n, unbounded
    with pytest.raises(C.CalibrationError, match="no validation scores"):
        C.conformal_quantile(np.array([]))


def test_absolute_intervals_cover_90_percent_of_fresh_gaussian_draws():
    rng = np.random.default_rng(0)
    mean = rng.uniform(-2, 2, N_CAL)
    cal = C.fit(mean + rng.normal(0, 0.3, N_CAL), mean, method="absolute")
    assert cal.method == "absolute" and cal.n_val == N_CAL and cal.q == pytest.approx(1.645 * 0.3, rel=0.08)
    new = rng.uniform(-2, 2, N_NEW)
    assert C.coverage(cal, new + rng.normal(0, 0.3, N_NEW), new) == pytest.approx(0.9, abs=TOL)
    lo, hi = cal.interval(new[:3])
    assert np.allclose(hi - lo, 2 * cal.q) and np.allclose((hi + lo) / 2, new[:3])


def test_binned_intervals_keep_their_coverage_where_the_mix_of_predictions_shifts():
    """The error grows with the predicted value (a band gap predicted near 0 is rarely far
    off); the new set holds mostly large predictions, as the zoo's test sets do."""
    rng = np.random.default_rng(1)

    def sigma(m: np.ndarray) -> np.ndarray:
        return 0.05 + 0.3 * m

    m_val = rng.uniform(0, 4, N_CAL)
    y_val = m_val + rng.normal(0, sigma(m_val))
    binned, absolute = C.fit(y_val, m_val), C.fit(y_val, m_val, method="absolute")
    assert binned.method == "binned" and len(binned.bin_q) == C.BINS and sum(binned.bin_n) == N_CAL
    assert list(binned.bin_q) == sorted(binned.bin_q)  # wider where the error is larger
    m_new = 4 * rng.beta(3, 1, N_NEW)  # shifted towards large predicted values
    y_new = m_new + rng.normal(0, sigma(m_new))
    assert C.coverage(binned, y_new, m_new) == pytest.approx(0.9, abs=TOL + 0.01)
    assert C.coverage(absolute, y_new, m_new) < 0.85  # one global half-width under-covers the shifted set
    m_same = rng.uniform(0, 4, N_NEW)
    assert C.coverage(binned, m_same + rng.normal(0, sigma(m_same)), m_same) == pytest.approx(0.9, abs=TOL)


def test_scaled_intervals_follow_the_ensemble_spread():
    rng = np.random.default_rng(2)

    def draw(n):
        sd = rng.uniform(0.05, 0.5, n)  # the ensemble's std tracks the true error scale
        mean = rng.normal(0, 1, n)
        return mean + rng.normal(0, sd), mean, sd * rng.uniform(0.8, 1.2, n)

    y, m, s = draw(N_CAL)
    cal = C.fit(y, m, s)
    assert cal.method == "scaled" and cal.s0 == pytest.approx(float(np.median(s)))
    y2, m2, s2 = draw(N_NEW)
    assert C.coverage(cal, y2, m2, s2) == pytest.approx(0.9, abs=TOL)
    lo, hi = cal.interval(m2[:2], s2[:2])
    assert np.allclose(hi - lo, 2 * cal.q * (s2[:2] + cal.s0))
    with pytest.raises(C.CalibrationError, match="predict with all the seeds"):
        cal.interval(m2)


def test_small_validation_sets_fall_back_to_one_half_width_and_nan_labels_are_left_out():
    rng = np.random.default_rng(3)
    m = rng.normal(0, 1, 80)
    y = m + rng.normal(0, 0.1, 80)
    y[:5] = np.nan
    cal = C.fit(y, m)
    assert cal.method == "absolute" and cal.n_val == 75  # 75 // 50 < 2 bins
    assert len(C.covered(cal, y, m)) == 75


def test_to_dict_and_from_dict_round_trip_through_json():
    rng = np.random.default_rng(4)
    m = rng.normal(0, 1, 400)
    y = m + rng.normal(0, 0.2, 400)
    fits = [C.fit(y, m), C.fit(y, m, method="absolute"), C.fit(y, m, np.full(400, 0.2)), C.fit(y[:8], m[:8])]
    assert [f.method for f in fits] == ["binned", "absolute", "scaled", "absolute"]
    assert fits[3].q == math.inf
    for cal in fits:
        d = json.loads(json.dumps(cal.to_dict(), allow_nan=False))  # plain JSON: an unbounded q is null
        back = C.Calibration.from_dict(d)
        assert back == cal
        assert np.array_equal(back.half_width(m[:20], np.full(20, 0.2)), cal.half_width(m[:20], np.full(20, 0.2)))
    with pytest.raises(C.CalibrationError, match="not a calibration record"):
        C.Calibration.from_dict({"level": 0.9, "method": "absolute"})
    with pytest.raises(C.CalibrationError, match="unknown calibration method 'magic'"):
        C.Calibration.from_dict({**fits[1].to_dict(), "method": "magic"})


@pytest.mark.parametrize("card_path", CARDS, ids=[p.parent.name for p in CARDS])
def test_every_published_card_has_a_calibration_covering_88_to_92_percent_of_its_test_set(card_path: Path):
    card = json.loads(card_path.read_text())
    cal = card["calibration"]
    props = card["predicts"]["properties"]
    assert cal["level"] == 0.9 and set(cal["outputs"]) == set(props) == set(cal["test"])
    assert "outside data may be covered less" in cal["note"]
    seeds = len(card["files"])
    assert cal["validation"]["seeds"] == seeds
    assert cal["validation"]["n"] == sum(t["n_val"] for t in card["training"])  # each seed's own validation set
    for p in props:
        c = C.Calibration.from_dict(cal["outputs"][p])
        assert c.level == 0.9 and c.n_val == cal["validation"]["n"] and c.method in C.METHODS
        test = cal["test"][p]
        assert test["n"] == card["test"]["n_test"]
        assert 0.88 <= test["coverage"] <= 0.92, (p, test["coverage"])
    md = (card_path.parent / "card.md").read_text()
    assert "## Uncertainty" in md and f"coverage on the {card['test']['n_test']:,} test crystals" in md
    assert "Outside data may be covered less" in md


# --------------------------------------------------------------------------- the card machinery


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two seeds of the zoo's log10 K_VRH model given small validation sets (different, or
    shared) and one test set of the committed subset, as canonical table and raw CSV."""
    d = tmp_path_factory.mktemp("cal")
    raw = pd.read_parquet(SUBSET)
    rows = raw[raw["k_vrh"].notna()].head(150).reset_index(drop=True)
    df, _, _ = ingest.ingest_frame(rows, ingest.IngestOptions(), path=str(SUBSET), progress=False)
    table.write(df, d / "structures.parquet")
    rows[["material_id", "cif", "k_vrh"]].to_csv(d / "raw.csv", index=False)
    ids = df["material_id"].tolist()
    test = ids[100:150]
    splits = {
        "per_seed": [ids[0:60], ids[40:100]],  # different validation sets (a fine-tuning cell's)
        "shared": [ids[0:100], ids[0:100]],
        "single": [ids[0:60]],
    }
    folders = {}
    for kind, vals in splits.items():
        out = d / kind
        out.mkdir()
        card = json.loads((ZOO / "mp2018-log_kvrh" / "card.json").read_text())
        card.pop("calibration", None)
        card["files"] = [f"model_s{s}.pt" for s in range(len(vals))]
        card["training"] = card["training"][: len(vals)]
        for s, val in enumerate(vals):
            ck = load_checkpoint(ZOO / "mp2018-log_kvrh" / f"model_s{s}.pt")
            ck["split"] = {"train": [], "val": val, "test": test}
            save_checkpoint(ck, out / f"model_s{s}.pt")
            card["training"][s]["n_val"] = len(val)
        io.write_json(out / "card.json", card)
        io.write_text(out / "card.md", cards.markdown(card, out))
        folders[kind] = out
    return {"dir": d, "df": df, "folders": folders, "test": test}


def test_calibrate_writes_the_card_for_each_kind_of_validation_set(small):
    per_seed = cards.calibrate(small["folders"]["per_seed"], small["df"])
    shared = cards.calibrate(small["folders"]["shared"], small["dir"] / "structures.parquet")
    single = cards.calibrate(small["folders"]["single"], small["df"])
    # pooled residuals of each seed on its own validation set: 120 scores, 100 crystals, 2 bins
    assert per_seed["validation"] == {**per_seed["validation"], "n": 120, "crystals": 100, "seeds": 2}
    assert per_seed["outputs"]["k_vrh"]["method"] == "binned" and len(per_seed["outputs"]["k_vrh"]["bin_q"]) == 2
    # one validation set for both seeds: their spread there is honest, so the intervals scale with it
    assert shared["outputs"]["k_vrh"]["method"] == "scaled" and shared["validation"]["n"] == 100
    assert single["outputs"]["k_vrh"]["method"] == "absolute" and single["validation"]["n"] == 60
    assert shared["data"] == {"structures": "structures.parquet"}
    for section, kind in ((per_seed, "per_seed"), (shared, "shared"), (single, "single")):
        assert section["space"] == {"k_vrh": "log10_k_vrh"} and section["level"] == 0.9
        t = section["test"]["k_vrh"]
        assert t["n"] == 50 and 0.0 <= t["coverage"] <= 1.0 and t["mean_half_width"] > 0
        folder = small["folders"][kind]
        written = json.loads((folder / "card.json").read_text())
        assert written["calibration"] == json.loads(json.dumps(section))
        md = (folder / "card.md").read_text()
        assert md.count("## Uncertainty") == 1 and "coverage on the 50 test crystals" in md
        assert "log10 units" in md and "bounds convert back to GPa" in md


def test_calibration_reproduces_a_direct_prediction(small):
    """Test coverage as recomputed from tlcgcnn.predict's ensemble mean and the fitted rule."""
    from tlcgcnn.data.targets import labels
    from tlcgcnn.predict import build_graphs, load_models, predict_frame

    folder = small["folders"]["per_seed"]
    section = cards.calibrate(folder, small["df"])
    models = load_models([folder / "model_s0.pt", folder / "model_s1.pt"])
    rows = small["df"].set_index("material_id").loc[small["test"]].reset_index()
    pf = predict_frame(models, build_graphs(rows, models[0].params, progress=False), device="cpu", progress=False)
    cal = C.Calibration.from_dict(section["outputs"]["k_vrh"])
    y = labels(rows, small["test"], models[0].target)
    assert C.coverage(cal, y, pf["log10_k_vrh"]) == pytest.approx(section["test"]["k_vrh"]["coverage"])


def test_the_command_ingests_only_the_rows_it_needs(small, tmp_path, capsys, caplog):
    folder = tmp_path / "m"
    shutil.copytree(small["folders"]["per_seed"], folder)
    extra = pd.read_parquet(SUBSET).iloc[[0]].assign(material_id="not-needed", cif="not a CIF")
    raw = pd.concat([pd.read_csv(small["dir"] / "raw.csv"), extra[["material_id", "cif", "k_vrh"]]])
    raw.to_csv(tmp_path / "raw.csv", index=False)  # an unparsable row the models do not need: never parsed
    caplog.set_level(logging.INFO, logger="tlcgcnn.report.cards")
    assert cards.main(["calibrate", str(folder), "--data", str(tmp_path / "raw.csv"), "--threads", "1"]) == 0
    assert "150 of 151 rows needed, 150 kept by ingest" in caplog.text  # the seeds' validation (100) and test (50)
    out = capsys.readouterr().out
    assert "m k_vrh: binned, validation n 120, test n 50, coverage" in out
    card = json.loads((folder / "card.json").read_text())
    assert card["calibration"]["data"]["input"] == "raw.csv"
    assert card["calibration"]["data"]["matches_training_input"] is False  # not the file the model was trained on
    with pytest.raises(cards.CardError, match=r"lacks 50 of the 50 test crystals"):
        cards.calibrate(folder, small["df"][~small["df"]["material_id"].isin(small["test"])])


def test_publish_calibrates_when_given_the_structure_table(small, tmp_path):
    """The model_card rule's path: publish() with the run's structures.parquet."""
    src = small["folders"]["per_seed"]
    records, preds = [], []
    for s in (0, 1):
        records.append({"seed": s, "checkpoint": str(src / f"model_s{s}.pt"), "mae": 0.1, "n_test": 50})
        preds.append(pd.DataFrame({"material_id": small["test"], "y_true": 2.0, "y_pred": 2.1, "seed": s}))
    io.write_json(tmp_path / "metrics.json", records)
    io.write_parquet(pd.concat(preds, ignore_index=True), tmp_path / "predictions.parquet")
    summary = {"input": "raw.csv", "input_sha256": "a" * 64, "rows_in": 150, "rows_kept": 150}
    io.write_json(tmp_path / "ingest_summary.json", summary)
    card = cards.publish(
        {"name": "k", "kind": "finetune", "target": "log_kvrh", "size": "all", "seeds": [0, 1], "modes": ["ef_head"]},
        metrics={"ef_head": tmp_path / "metrics.json"},
        predictions={"ef_head": tmp_path / "predictions.parquet"},
        ingest_summary=tmp_path / "ingest_summary.json",
        out_dir=tmp_path / "k",
        config_name="zoo",
        structures=small["dir"] / "structures.parquet",
    )
    cal = card["calibration"]
    assert cal["validation"]["n"] == 120 and cal["test"]["k_vrh"]["n"] == 50
    assert cal["data"] == {"structures": "structures.parquet", "input": "raw.csv", "input_sha256": "a" * 64}
    assert json.loads((tmp_path / "k" / "card.json").read_text())["calibration"]["outputs"] == cal["outputs"]
    assert "## Uncertainty" in (tmp_path / "k" / "card.md").read_text()
    plain = cards.publish(
        {"name": "k2", "kind": "finetune", "target": "log_kvrh", "size": "all", "seeds": [0, 1], "modes": ["ef_head"]},
        metrics={"ef_head": tmp_path / "metrics.json"},
        predictions={"ef_head": tmp_path / "predictions.parquet"},
        ingest_summary=tmp_path / "ingest_summary.json",
        out_dir=tmp_path / "k2",
        config_name="zoo",
    )
    assert "calibration" not in plain and "## Uncertainty" not in (tmp_path / "k2" / "card.md").read_text()
