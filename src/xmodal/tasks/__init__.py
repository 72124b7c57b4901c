"""xmodal.tasks."""
