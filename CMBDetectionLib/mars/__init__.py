"""mars."""
