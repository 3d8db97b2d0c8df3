"""Records -> validated table -> genre vocabulary -> tf.data pipelines."""
