"""Sources -> events: Claude Code sessions, git repositories, experiment definitions."""
