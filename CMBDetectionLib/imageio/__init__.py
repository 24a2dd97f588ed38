"""imageio."""
