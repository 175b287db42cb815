"""The convergence verdict of a training run (tlcgcnn.analysis.convergence) and the zoo cards
that state it (python -m tlcgcnn.report.cards curves)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import ROOT

from tlcgcnn.analysis.convergence import FLAT_GAIN, judge
from tlcgcnn.report import cards
from tlcgcnn.report.figures import quality


def test_a_run_that_stopped_early_has_converged():
    c = judge([0.5, 0.3, 0.2, 0.25, 0.26, 0.27], epochs_planned=100)
    assert c.stopped_early and c.converged and c.best_epoch == 2 and c.epochs_run == 6
    assert c.text() == "yes (stopped early at 6 of 100 epochs)"


def test_a_run_still_falling_at_its_last_epoch_has_not_converged():
    scores = [1.0 / (e + 1) for e in range(50)]  # 2 % lower or more each epoch to the end
    c = judge(scores, epochs_planned=50)
    assert not c.stopped_early and not c.converged
    assert c.tail_epochs == 5 and c.best_epoch == 49
    assert c.tail_gain == pytest.approx((scores[44] - scores[49]) / scores[44])
    assert c.text().startswith("no (still improving: ") and "in the last 5 epochs" in c.text()


def test_a_flat_end_has_converged_and_the_threshold_is_relative():
    flat = [1.0, 0.5, *[0.2] * 17, 0.2 * (1 - FLAT_GAIN / 2)]  # 0.5 % better in the tail: flat
    steep = [1.0, 0.5, *[0.2] * 17, 0.2 * (1 - 2 * FLAT_GAIN)]  # 2 % better: still improving
    assert judge(flat, 20).converged and not judge(steep, 20).converged
    assert judge([x * 1000 for x in flat], 20).tail_gain == pytest.approx(judge(flat, 20).tail_gain)
    # a worse tail improved nothing
    assert judge([1.0, 0.2, *[0.3] * 18], 20).tail_gain == 0.0


def test_bad_histories_are_refused():
    with pytest.raises(ValueError, match="without a validation history"):
        judge([], 10)
    with pytest.raises(ValueError, match="12 epochs in the history but only 10 planned"):
        judge([1.0] * 12, 10)


def test_zoo_cards_state_each_seed_s_convergence_from_its_checkpoint(tmp_path, capsys):
    """The shipped cards carry what `cards curves` computes from their checkpoints, and their
    training-curve figure passes the figure-quality guard."""
    zoo = ROOT / "resources" / "pretrained"
    folder = tmp_path / "mp2018-log_kvrh"
    shutil.copytree(zoo / "mp2018-log_kvrh", folder)
    (folder / "training_curve.png").unlink()
    assert cards.main(["curves", str(folder)]) == 0
    card = json.loads((folder / "card.json").read_text())
    shipped = json.loads((zoo / "mp2018-log_kvrh" / "card.json").read_text())
    assert [r["convergence"] for r in card["training"]] == [r["convergence"] for r in shipped["training"]]
    for row in card["training"]:
        ckpt = cards.training_runs([folder / f"model_s{row['seed']}.pt"])[0]
        assert row["converged"] == ckpt.convergence.converged
        assert row["epochs_run"] == ckpt.convergence.epochs_run and row["best_epoch"] == ckpt.convergence.best_epoch
    quality.check_png(folder / "training_curve.png", "training_curve.png")
    assert "seed 2: converged yes (stopped early at 66 of 100 epochs)" in capsys.readouterr().out
    for published in sorted(p for p in zoo.iterdir() if (p / "card.json").is_file()):
        md = (published / "card.md").read_text()
        assert "![training curve](training_curve.png)" in md and (published / "training_curve.png").is_file()
        for row in json.loads((published / "card.json").read_text())["training"]:
            assert row["convergence"] and f"| {row['convergence']} |" in md, published.name
