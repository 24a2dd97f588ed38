"""probability.backends."""
