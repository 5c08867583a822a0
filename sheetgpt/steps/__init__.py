"""The components of the forward pass: one module per part of the model (see base.py)."""
