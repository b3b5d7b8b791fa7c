"""qemu layer."""
