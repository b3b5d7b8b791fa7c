"""guests layer."""
