"""Moves tasks from the durable queue to worker slots and commits their outcomes."""
