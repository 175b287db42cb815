"""tlcgcnn.analysis.probe: ridge from crystal vectors (and structure columns) to a property, on
random splits. Synthetic crystals whose property is known exactly: a vector that carries it is
probed near zero error, one that does not is probed near the predict-the-mean floor, and the
volume column supplies what the vector lacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from tlcgcnn.analysis import probe as P


@pytest.fixture(scope="module")
def crystals() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    n = 900
    nsites = rng.integers(1, 40, n)
    vpa = rng.uniform(8.0, 40.0, n)  # Å³ per atom
    hidden = rng.normal(size=n)
    # log10 of a "modulus" that falls with the volume per atom and depends on one hidden factor
    modulus = 10 ** (3.0 - 1.5 * np.log(vpa) / np.log(10) + 0.1 * hidden)
    table = pd.DataFrame(
        {
            "material_id": [f"mp-{i}" for i in range(n)],
            "nsites": nsites,
            "volume": vpa * nsites,
            "k_vrh": modulus,
        }
    )
    table.loc[::10, "k_vrh"] = np.nan  # unlabelled crystals are left out
    noise = rng.normal(size=(n, 6))
    knows = pd.DataFrame(np.c_[np.log(vpa), hidden, noise[:, :4]], columns=[f"f{i}" for i in range(6)])
    blind = pd.DataFrame(np.c_[hidden, noise[:, 1:]], columns=[f"f{i}" for i in range(6)])
    ids = table["material_id"]
    return table, knows.assign(material_id=ids), blind.assign(material_id=ids.sample(frac=1.0, random_state=1).values)


def test_a_vector_that_carries_the_property_is_probed_to_zero_error(crystals):
    table, knows, _ = crystals
    r = P.probe(table, "k_vrh", vectors=knows, name="knows", transform="log10", n_train=300, n_test=400)
    assert r.mae < 0.01 * r.mae_mean and r.n_train == 300 and r.n_test == 400 and r.seeds == 3
    assert r.columns_text() == "knows vectors"
    v = P.probe(table, "log_volume_per_atom", vectors=knows, name="knows", n_train=300)  # a structure column
    assert v.mae < 0.01 * v.mae_mean


def test_the_volume_column_supplies_what_a_blind_vector_lacks(crystals):
    table, _, blind = crystals
    # blind's rows belong to other crystals (its ids shuffled): it carries nothing of each crystal
    alone = P.probe(table, "k_vrh", vectors=blind, name="blind", transform="log10", n_train=300)
    with_v = P.probe(
        table, "k_vrh", vectors=blind, name="blind", extra=["log_volume_per_atom"], transform="log10", n_train=300
    )
    only_v = P.probe(table, "k_vrh", extra=["log_volume_per_atom"], transform="log10", n_train=300)
    assert alone.mae > 0.9 * alone.mae_mean  # carries nothing of this crystal
    # with the volume only the hidden factor is missing: MAE = 0.1 E|N(0, 1)| = 0.1 sqrt(2 / pi)
    assert with_v.mae == pytest.approx(0.1 * np.sqrt(2 / np.pi), rel=0.1)
    assert only_v.mae == pytest.approx(with_v.mae, rel=0.1)
    assert only_v.columns_text() == "log_volume_per_atom"
    assert "| blind vectors + log_volume_per_atom |" in P.markdown([alone, with_v, only_v])


def test_bad_requests_say_what_is_wrong(crystals):
    table, knows, _ = crystals
    with pytest.raises(P.ProbeError, match="no column 'g_vrh'"):
        P.probe(table, "g_vrh", vectors=knows)
    with pytest.raises(P.ProbeError, match="unknown extra columns"):
        P.probe(table, "k_vrh", vectors=knows, extra=["density"])
    with pytest.raises(P.ProbeError, match="needs n_train"):
        P.probe(table, "k_vrh", vectors=knows, n_train=5000)


def test_the_command_line_prints_one_row_per_feature_set(crystals, tmp_path, capsys):
    table, knows, blind = crystals
    table.to_parquet(tmp_path / "structures.parquet")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    knows.to_parquet(tmp_path / "a" / "embeddings.parquet")
    blind.to_parquet(tmp_path / "b" / "embeddings.parquet")
    argv = [str(tmp_path / "structures.parquet"), str(tmp_path / "a" / "embeddings.parquet")]
    argv += [str(tmp_path / "b" / "embeddings.parquet"), "--property", "k_vrh", "--transform", "log10"]
    assert P.main([*argv, "--n-train", "300", "--extra", "log_volume_per_atom"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n| ") == 5 and "| a vectors |" in out and "| b vectors + log_volume_per_atom |" in out
    assert P.main([*argv, "--n-train", "5000"]) == 2
    csv = tmp_path / "probe.csv"
    assert P.main([*argv, "--n-train", "300", "--csv", str(csv)]) == 0
    assert P.main([*argv, "--n-train", "300", "--csv", str(csv), "--extra", "log_nsites"]) == 0
    rows = pd.read_csv(csv, keep_default_na=False)
    assert len(rows) == 5 and set(rows["extra"]) == {"", "log_nsites"}  # the plain rows replaced, not repeated


PROBE_CSV = ROOT / "docs" / "results" / "backbones-sevennet-cpu" / "tables" / "probe.csv"
ROWS = {
    "ln(volume per atom / Å³)": "log_volume_per_atom",
    "log10 K_VRH": "k_vrh",
    "log10 G_VRH": "g_vrh",
    "HSE gap (eV)": "band_gap_hse",
}
COLUMNS = [
    ("sevennet-0", ""),
    ("chgnet-0.3.0", ""),
    ("sevennet-0", "log_volume_per_atom"),
    ("chgnet-0.3.0", "log_volume_per_atom"),
    ("", "log_volume_per_atom"),
]


def test_the_results_pages_probe_table_is_the_committed_csv():
    csv = pd.read_csv(PROBE_CSV, keep_default_na=False)
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| probed quantity |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) == len(ROWS)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        prop = ROWS[cells[0]]
        got = csv[csv["property"].eq(prop)]
        for cell, (vectors, extra) in zip(cells[1:6], COLUMNS, strict=True):
            match = got[got["vectors"].eq(vectors) & got["extra"].eq(extra)]
            if cell == "–":
                assert match.empty, (prop, vectors, extra)
            else:
                assert cell == f"{float(match['mae'].iloc[0]):.3f}", (prop, vectors, extra)
        assert cells[6] == f"{float(got['mae_mean'].iloc[0]):.3f}"
