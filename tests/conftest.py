"""Shared test set-up. Feature folders add their own conftest.py (tests/site, tests/workers, ...)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
