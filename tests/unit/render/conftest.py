"""Render unit tests use the shared fixtures of tests/conftest.py (astronaut_png, faces_dir)."""
