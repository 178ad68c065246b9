"""The OpenAI-compatible replica server: one or more models behind ``/v1/*``.

``create_app(manager)`` builds the FastAPI app; ``ModelManager`` holds the
models under a memory budget; ``ServerThread`` runs the app with uvicorn on a
free port (tests, workers, benchmarks). ``llmos serve`` is the CLI front end.
"""

from llmos.serving.server.app import create_app
from llmos.serving.server.model_manager import ManagerConfig, ModelManager, ModelSpec
from llmos.serving.server.runner import ServerThread

__all__ = ["ManagerConfig", "ModelManager", "ModelSpec", "ServerThread", "create_app"]
