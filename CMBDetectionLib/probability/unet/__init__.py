"""probability.unet."""
