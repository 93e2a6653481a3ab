"""Using a trained model: the inference record of a checkpoint, embedding images, verifying pairs at a calibrated
FAR, ONNX export with a parity check, and model cards.

Layout: ``record.py`` (what a checkpoint carries for inference, written at fit time), ``network.py`` (the torch
feature network and the backbone allowlist), ``models.py`` (loading a checkpoint or an ``.onnx`` for inference),
``faces.py`` (image lists, aligned or landmark-aligned faces, batches), ``embed.py`` (``amlit embed``),
``calibration.py`` + ``verify.py`` (``amlit verify``), ``onnx_export.py`` (``amlit export onnx``),
``model_card.py`` (``model_card.md`` / ``.json``).
"""
