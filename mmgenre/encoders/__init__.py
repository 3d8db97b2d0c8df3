"""Pretrained encoders that work offline: known sources, preparation, embedding."""
