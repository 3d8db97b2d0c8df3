"""Training loop, callbacks and run folders."""
