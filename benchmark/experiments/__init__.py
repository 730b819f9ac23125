"""Seed-method studies that print their tables (issue 12): each module runs with ``python -m`` and a few options."""
