"""The read-only web viewer (`chronicle serve`)."""
