"""Executes tasks: pre-started slot processes driven by one ZeroMQ loop."""
