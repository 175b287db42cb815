"""Pretraining: one source model per ``pretrain`` entry of the configuration.

The source arrives as a :class:`tlcgcnn.config.PretrainSource` (the Snakemake adapter rebuilds
it from the rule's params with :meth:`~tlcgcnn.config.PretrainSource.from_params`). Its
training pool leaves out the fixed test sets of every fine-tuning target with a transfer mode
(:attr:`tlcgcnn.config.Config.transfer_target_names`), so that no model fine-tuned from a
source, nor its frozen features, is tested on a material the source trained on. (A target of
scratch and baseline modes only has no source to leak through.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlcgcnn.config import PretrainSource
from tlcgcnn.train.loop import TrainConfig, exclude_ids, run_training


def pretrain(
    *,
    source: PretrainSource,
    table_path: str,
    split_path: str,
    graph_dir: str,
    atom_features_path: str,
    target_splits: list[str],
    split_cfg: dict[str, Any],
    threads: int,
    config: dict[str, Any] | None,
    out_checkpoint: str,
) -> dict[str, Any]:
    """Train the source model and write its checkpoint. A resumable training state is kept
    beside it (``state.pt``, removed at the end), so a killed pretraining job that is
    started again continues from its last epoch."""
    if source.checkpoint:
        raise ValueError(f"pretrain source {source.name} is the checkpoint {source.checkpoint}: nothing to train")
    return run_training(
        stage="pretrain",
        table_path=table_path,
        split_path=split_path,
        graph_dir=graph_dir,
        atom_features_path=atom_features_path,
        target=source.target,
        size=source.size,
        seed=int(source.seed),
        split_cfg=split_cfg,
        model_config=source.model,
        train_config=TrainConfig.from_dict({**source.train, "threads": int(threads)}),
        config=config,
        out_checkpoint=out_checkpoint,
        exclude_ids=exclude_ids(target_splits),
        resume_path=str(Path(out_checkpoint).with_name("state.pt")),
    )
