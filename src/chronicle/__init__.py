"""chronicle: an event-sourced, append-only log of LLM research work."""

__version__ = "0.1.0"
