"""tlcgcnn: transfer learning with crystal graph convolutional neural networks."""

__version__ = "0.1.0"
