"""Per-shell quoting and statement syntax; see base.py."""
