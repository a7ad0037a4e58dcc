"""Verb implementations that need more than a few lines (the parser is in cli)."""
