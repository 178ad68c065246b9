"""Pure domain types of llmos: devices, resources, job specs, states.

Nothing in this package performs I/O or imports torch, SQLAlchemy, FastAPI or Ray.
"""
