"""Evaluation: pure protocol functions on tensors, and the torchmetrics collector that gathers embeddings."""
