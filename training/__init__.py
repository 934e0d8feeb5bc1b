"""Braid's training layer: training sets, model fitting, evaluation and model files."""
