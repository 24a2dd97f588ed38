"""Probability maps: the UNet (slice by slice, through a backend) and the two-stage method."""
