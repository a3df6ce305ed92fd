"""Lmod and Environment Modules modulefiles for the store's profiles and artifacts."""
