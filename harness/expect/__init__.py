"""expect layer."""
