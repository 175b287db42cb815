"""Graph neural network models sharing the :class:`tlcgcnn.graphs.Batch` format."""

from tlcgcnn.models.cgcnn import CGCNN, ModelConfig, build_model

__all__ = ["CGCNN", "ModelConfig", "build_model"]
