"""xmodal.engine."""
