"""The HTTP API: a FastAPI app with one router per resource (see :mod:`llmos.api.app`)."""
