"""Test doubles that are real processes: an OpenAI-compatible server that misbehaves on purpose."""
