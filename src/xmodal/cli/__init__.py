"""xmodal.cli."""
