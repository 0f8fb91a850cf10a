"""Runs read back from RunsService as conversation: a session's history (sessions) and a run's replay (forks)."""
