"""The Berkeley report's Tables 2 and 3 beside a study in its own setting (tlcgcnn.report.berkeley):
each source placed in the report's row by what it was pretrained on, the paired change against
scratch with one Holm family over the distinct cells, the figure, the page block, and the
report's numbers against the reference compilation of the papers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from PIL import Image

from tlcgcnn.report import berkeley
from tlcgcnn.report.backbones import block_is
from tlcgcnn.report.claims import ReportError
from tlcgcnn.utils import fileio as io

CONFIG = ROOT / "config" / "berkeley-cpu.yaml"
REFERENCE = Path(os.environ.get("TLCGCNN_PAPERS_REFERENCE", ROOT.parent / "shared" / "reference" / "papers.md"))
SEEDS = range(6)
NOISE = np.array([0.02, -0.01, 0.015, -0.02, 0.005, -0.01])
# (source, pretraining size, per-freeze offset against scratch in eV)
SOURCES = {
    "bk_ef": ("ef", 28500, (-0.03, -0.01, 0.06)),
    "bk_k": ("k", 2100, (-0.01, 0.05, 0.10)),
    "bk_g": ("g", 2100, (0.02, 0.12, 0.15)),
    "bk_comb": ("comb", 2100, (0.00, 0.03, 0.06)),
    "bk_efc": ("efc", 2100, (0.15, 0.25, 0.40)),
}


def _metrics() -> pd.DataFrame:
    rows = []
    base = {"stage": "finetune", "target": "band_gap", "size": "1000", "task": "regression"}
    for s in SEEDS:
        scratch = 0.80 + NOISE[s]
        rows.append({**base, "mode": "scratch", "seed": s, "error": scratch, "freeze": 0, "pretrained": None})
        for source, (short, size, offsets) in SOURCES.items():
            for k, off in enumerate(offsets, start=1):
                rows.append(
                    {
                        **base,
                        "mode": f"{short}_f{k}",
                        "seed": s,
                        "error": scratch + off + 0.3 * NOISE[(s + k) % len(NOISE)],
                        "freeze": k,
                        "pretrained": source,
                        "pretrain_size": float(size),
                    }
                )
    return pd.DataFrame(rows)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "berkeley-cpu"
    io.write_csv(_metrics(), folder / "tables" / "metrics.csv")
    return folder


def test_sources_take_the_reports_rows_by_what_they_learnt():
    places = berkeley.source_rows(CONFIG, _metrics())
    assert places == {
        "bk_ef": [("2", "formation energy")],
        "bk_k": [("2", "bulk modulus")],
        "bk_g": [("2", "shear modulus")],
        "bk_comb": [("2", "combined"), ("3", "combined")],
        "bk_efc": [("3", "formation energy")],
    }


def test_tables_pair_every_cell_with_scratch_in_one_family():
    m = _metrics()
    tab = berkeley.tables(m, berkeley.source_rows(CONFIG, m))
    assert len(tab) == 2 + 4 * 3 + 2 * 3
    scratch = m[m["mode"].eq("scratch")]["error"].mean()
    base = tab[tab["row"].eq("baseline")]
    assert list(base["table"]) == ["2", "3"] and np.allclose(base["mae"], scratch)
    ef1 = tab[(tab["table"] == "2") & (tab["row"] == "formation energy") & (tab["freeze"] == 1)].iloc[0]
    errors = m[m["mode"].eq("ef_f1")].set_index("seed")["error"]
    assert ef1["mae"] == pytest.approx(errors.mean())
    assert ef1["mean_diff"] == pytest.approx((errors - m[m["mode"].eq("scratch")].set_index("seed")["error"]).mean())
    assert ef1["paper_mae"] == 0.797 and ef1["paper_change_pct"] == pytest.approx(100 * (0.797 - 0.812) / 0.812)
    assert ef1["change_pct"] == pytest.approx(100 * ef1["mean_diff"] / scratch)
    # Table 3's combined row repeats Table 2's test: counted once, the same Holm p
    cells = tab[tab["row"].ne("baseline")]
    assert cells.drop_duplicates(["source", "freeze"]).shape[0] == 15
    comb = cells[cells["source"].eq("bk_comb")].groupby("freeze")["p_holm"].nunique()
    assert (comb == 1).all()
    ps = cells.drop_duplicates(["source", "freeze"])
    assert (ps["p_holm"] >= ps["p_value"]).all() and ps["p_holm"].max() <= 1.0
    efc = tab[(tab["table"] == "3") & (tab["row"] == "formation energy")]
    assert list(efc["source"]) == ["bk_efc"] * 3 and list(efc["paper_mae"]) == [1.022, 1.142, 1.437]


def test_publish_writes_the_table_figure_and_page_block(tmp_path):
    folder = _folder(tmp_path)
    page = tmp_path / "results.md"
    page.write_text(f"# Results\n\n{berkeley.PAGE_BEGIN}\n{berkeley.PAGE_END}\n\nAfter.\n", encoding="utf-8")
    assert berkeley.main([str(CONFIG), str(folder), "--page", str(page)]) == 0
    tab = berkeley.read(folder)
    assert len(tab) == 20 and tab["table"].tolist()[:1] == ["2"]
    png = folder / "figures" / berkeley.FIGURE
    with Image.open(png) as im:
        assert max(im.size) <= 3000
    assert block_is(page, berkeley.page_block(tab), berkeley.PAGE_BEGIN, berkeley.PAGE_END)
    text = page.read_text(encoding="utf-8")
    assert "| 2 | formation energy (bk_ef, 28,500) | 1 | 0.797 (−2 %)".replace("−", "-") in text
    assert text.endswith("After.\n")


def _run_dir(tmp_path: Path) -> Path:
    """pretrain/<source>/metrics.json and model.pt as a run leaves them (the parts the report reads:
    target, planned epochs, validation history); bk_ef still improving at its last epochs, the
    others flat."""
    import torch

    run = tmp_path / "run"
    for i, (name, (_, size, _)) in enumerate(SOURCES.items()):
        props = ["formation_energy_per_atom", "k_vrh", "g_vrh"] if name == "bk_comb" else None
        prop = {"bk_k": "k_vrh", "bk_g": "g_vrh"}.get(name, "formation_energy_per_atom")
        epochs = 30 if name == "bk_ef" else 60
        val = (
            [1.0 / (1 + e) for e in range(epochs)] if name == "bk_ef" else [max(0.2, 1.0 - 0.1 * e) for e in range(40)]
        )
        folder = run / "pretrain" / name
        folder.mkdir(parents=True)
        ckpt = {
            "target": {"property": prop, "properties": props},
            "train_config": {"epochs": epochs},
            "history": {"val_mae": val, "train_loss": val},
        }
        torch.save(ckpt, folder / "model.pt")
        metrics = {"mae": 0.05 + i, "n_train": size, "n_val": 1000, "n_test": 90, "best_epoch": len(val) - 1}
        metrics.update(epochs_run=len(val), seconds=100.0, device="cpu", hardware="test host")
        if props:
            metrics.update({f"mae_{p}": 0.1 * (j + 1) for j, p in enumerate(props)})
        io.write_json(folder / "metrics.json", metrics)
    return run


def test_sources_are_listed_with_their_convergence(tmp_path):
    folder, run = _folder(tmp_path), _run_dir(tmp_path)
    page = tmp_path / "results.md"
    page.write_text(
        f"{berkeley.PAGE_BEGIN}\n{berkeley.PAGE_END}\n{berkeley.SOURCES_BEGIN}\n{berkeley.SOURCES_END}\n",
        encoding="utf-8",
    )
    assert berkeley.main([str(CONFIG), str(folder), "--page", str(page), "--run", str(run)]) == 0
    src = pd.read_csv(folder / "tables" / berkeley.SOURCES_TABLE).set_index("source")
    assert src.loc["bk_ef", "converged"].startswith("no (still improving")
    assert src.loc["bk_k", "converged"] == "yes (stopped early at 40 of 60 epochs)"
    assert src.loc["bk_efc", "row"] == "formation energy (Table 3, equal size)"
    assert src.loc["bk_comb", "properties"] == "formation_energy_per_atom + k_vrh + g_vrh"
    assert src.loc["bk_comb", "test_mae_g_vrh"] == pytest.approx(0.3)
    assert src.loc["bk_ef", "test_mae_formation_energy_per_atom"] == pytest.approx(0.05)
    with Image.open(folder / "figures" / berkeley.SOURCES_FIGURE) as im:
        assert max(im.size) <= 3000
    text = page.read_text(encoding="utf-8")
    assert "| bk_comb | combined | formation_energy_per_atom + k_vrh + g_vrh | 2,100 |" in text
    (run / "pretrain" / "bk_g" / "metrics.json").unlink()
    with pytest.raises(ReportError, match="has source bk_g been pretrained"):
        berkeley.publish(CONFIG, folder, run)


def test_runs_without_scratch_or_of_several_cells_are_refused(tmp_path):
    m = _metrics()
    places = berkeley.source_rows(CONFIG, m)
    with pytest.raises(ReportError, match="no scratch runs"):
        berkeley.tables(m[m["mode"].ne("scratch")], places)
    with pytest.raises(ReportError, match="one target at one size"):
        berkeley.tables(pd.concat([m, m.assign(size="500")]), places)
    assert berkeley.main([str(CONFIG), str(tmp_path / "nowhere")]) == 2


def test_the_reports_numbers_are_its_tables():
    """PAPER and BASELINE against Tables 2 and 3 of the reference compilation of the papers."""
    if not REFERENCE.is_file():
        pytest.skip(f"the reference compilation of the papers is not at {REFERENCE} (../shared is absent)")
    text = REFERENCE.read_text(encoding="utf-8")
    section = text[text.index("## Layer freezing") : text.index("## MT-CGCNN")]
    t2 = section[section.index("Table 2") : section.index("Table 3")]
    t3 = section[section.index("Table 3") :]
    assert f"**{berkeley.BASELINE:.3f}**" in t2
    for (table, row), values in berkeley.PAPER.items():
        block = t2 if table == "2" else t3
        m = re.search(rf"^\| {re.escape(row)} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", block, re.M)
        assert m, f"Table {table} has no row {row!r}"
        assert tuple(float(x) for x in m.groups()) == values


def test_the_published_page_blocks_are_the_published_tables():
    """docs/results.md's two Berkeley blocks are what docs/results/berkeley-cpu's tables give, and
    every cell of the published table is one the configuration runs."""
    folder, page = ROOT / "docs" / "results" / "berkeley-cpu", ROOT / "docs" / "results.md"
    tab = berkeley.read(folder)
    assert block_is(page, berkeley.page_block(tab), berkeley.PAGE_BEGIN, berkeley.PAGE_END)
    src = pd.read_csv(folder / "tables" / berkeley.SOURCES_TABLE)
    assert block_is(page, berkeley.sources_block(src), berkeley.SOURCES_BEGIN, berkeley.SOURCES_END)
    metrics = pd.read_csv(folder / "tables" / "metrics.csv")
    assert set(tab["mode"]) <= set(metrics["mode"])
    assert (tab["n_seeds"] == 10).all()
