"""Checkpoint loading: each way a file can be wrong gives one message naming the file."""

from __future__ import annotations

import pickle
import warnings
from dataclasses import asdict

import pytest
import torch

from tlcgcnn.features.featurize import FORMAT_VERSION, FeaturizeParams
from tlcgcnn.nn import build_model
from tlcgcnn.train.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    check_compatible,
    featurize_params,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from tlcgcnn.train.transfer import TransferConfig, apply_transfer

CFG = {"atom_fea_len": 16, "n_conv": 2, "h_fea_len": 16}


def _checkpoint(atom_table, **extra):
    torch.manual_seed(0)
    model = build_model(CFG, atom_table)
    return {
        "format_version": CHECKPOINT_VERSION,
        "model_config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "normalizer": {"kind": "zscore", "mean": 0.0, "std": 1.0, "scale": 0.5},
        "target": {"name": "ef", "property": "formation_energy_per_atom"},
        "meta": {"package_version": "0.1.0"},
        **extra,
    }


@pytest.fixture
def ckpt_path(tmp_path, atom_table):
    path = tmp_path / "model.pt"
    save_checkpoint(_checkpoint(atom_table), path)
    return path


def _one_line(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


def test_round_trip(ckpt_path, atom_table):
    ckpt = load_checkpoint(ckpt_path, model_config=CFG, atom_table=atom_table)
    model = model_from_checkpoint(ckpt, ckpt_path)
    assert torch.equal(model.atom_table, atom_table.float())


@pytest.mark.parametrize("kind", ["cif", "random_bytes", "pickled_list", "torch_list", "dict_without_version", "empty"])
def test_not_a_checkpoint(tmp_path, nacl, kind):
    path = tmp_path / f"bad_{kind}.pt"
    if kind == "cif":
        path.write_text(nacl.to(fmt="cif"))
    elif kind == "random_bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "pickled_list":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "torch_list":
        torch.save([torch.zeros(2)], path)
    elif kind == "dict_without_version":
        torch.save({"state_dict": {}, "epoch": 3}, path)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "not a tlcgcnn checkpoint" in _one_line(exc, path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_pickled_object_is_refused_not_executed(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"format_version": CHECKPOINT_VERSION, "obj": TransferConfig("x")}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "weights_only" in _one_line(exc, path)


def test_other_format_version(tmp_path, atom_table):
    path = tmp_path / "v99.pt"
    save_checkpoint(_checkpoint(atom_table, format_version=99), path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = _one_line(exc, path)
    assert "format version 99" in msg and f"reads version {CHECKPOINT_VERSION}" in msg and "tlcgcnn 0.1.0" in msg


def test_incomplete_checkpoint(tmp_path, atom_table):
    ck = _checkpoint(atom_table)
    del ck["normalizer"]
    path = tmp_path / "partial.pt"
    save_checkpoint(ck, path)
    with pytest.raises(CheckpointError, match=r"missing \['normalizer'\]"):
        load_checkpoint(path)


def test_other_atom_table(ckpt_path, atom_table):
    other = atom_table.clone()
    other[26, 3] += 1.0  # Fe's row (row Z holds element Z)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(ckpt_path, atom_table=other)
    msg = _one_line(exc, ckpt_path)
    assert "the atom-feature table does not match" in msg and "1 of 101 element rows" in msg and "Z = 26" in msg
    with pytest.raises(CheckpointError, match=r"shape \[101, 92\] in the checkpoint vs \[101, 80\]"):
        load_checkpoint(ckpt_path, atom_table=atom_table[:, :80])


def test_other_architecture(ckpt_path):
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(ckpt_path, model_config={**CFG, "n_conv": 3, "kind": "attention"})
    msg = _one_line(exc, ckpt_path)
    assert "the architecture does not match" in msg
    assert (
        "n_conv: 2 in the checkpoint vs 3 expected" in msg
        and "kind: 'cgcnn' in the checkpoint vs 'attention' expected" in msg
    )
    assert "atom_fea_len" not in msg  # equal keys are not listed
    # defaults fill a partial config: the same architecture spelled out in full passes
    load_checkpoint(ckpt_path, model_config={**CFG, "n_h": 1, "radius": 8.0})


def test_weights_that_do_not_fit_their_config(tmp_path, atom_table):
    ck = _checkpoint(atom_table)
    ck["model_config"] = {**ck["model_config"], "atom_fea_len": 32}
    with pytest.raises(CheckpointError) as exc:
        model_from_checkpoint(ck, tmp_path / "m.pt")
    msg = str(exc.value)
    assert "\n" not in msg and "do not fit its own model config" in msg


def test_transfer_names_the_file(ckpt_path, atom_table):
    pre = load_checkpoint(ckpt_path)
    model = build_model({**CFG, "n_conv": 3, "n_out": 2}, atom_table)
    with pytest.raises(CheckpointError) as exc:
        apply_transfer(model, pre, TransferConfig(str(ckpt_path)))
    msg = _one_line(exc, ckpt_path)
    assert "n_conv: 2 in the checkpoint vs 3 expected" in msg and "n_out" not in msg
    other = atom_table.clone()
    other[0, 0] = 0.5
    with pytest.raises(CheckpointError, match="the atom-feature table does not match"):
        apply_transfer(build_model({**CFG, "n_out": 2}, other), pre, TransferConfig(str(ckpt_path)))
    assert (
        apply_transfer(build_model({**CFG, "n_out": 2}, atom_table), pre, TransferConfig(str(ckpt_path), freeze=1))
        != []
    )


def test_featurize_params(tmp_path, atom_table):
    params = FeaturizeParams(radius=6.0, max_neighbors=8)
    ck = _checkpoint(
        atom_table, featurize={"format_version": FORMAT_VERSION, "params": asdict(params), "key": params.key()}
    )
    assert featurize_params(ck, "m.pt") == params
    with pytest.warns(UserWarning, match="m.pt: the checkpoint does not record its featurization parameters"):
        assert featurize_params(_checkpoint(atom_table), "m.pt") == FeaturizeParams()
    ck["featurize"]["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="m.pt: its graphs were built with featurization format"):
        featurize_params(ck, "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_compatible(ck, "m.pt", model_config=CFG, atom_table=atom_table)  # compatible: silent
