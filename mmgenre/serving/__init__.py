"""Using a trained run outside training: export for serving on raw inputs, batch prediction."""
