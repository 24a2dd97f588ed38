"""lesions."""
