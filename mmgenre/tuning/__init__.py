"""keras-tuner search over registered models."""
