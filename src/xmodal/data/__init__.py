"""xmodal.data."""
