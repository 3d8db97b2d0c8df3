"""Model families (one per module), built by name through ``registry``."""
