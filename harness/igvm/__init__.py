"""igvm layer."""
