"""Controllers that reconcile desired state (the store) with actual state (the backend).

:class:`~llmos.control.plane.ControlPlane` wires a store, a backend and the
:class:`~llmos.control.controller.JobController` driven by one loop thread.
Only that thread changes job and task *states*; API handlers insert jobs,
set ``cancel_requested`` and record worker reports, then wake the loop.
"""
