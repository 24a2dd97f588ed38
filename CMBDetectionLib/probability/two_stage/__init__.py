"""probability.two_stage."""
