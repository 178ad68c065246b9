"""Serving: the engine (llmos.serving.engine) and the OpenAI-compatible replica server."""
