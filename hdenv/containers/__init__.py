"""Containers from a profile (`hdenv pack`): reproducible OCI, Docker, SquashFS and tar images."""
