"""xmodal.eval."""
