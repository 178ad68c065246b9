"""The discrete-event simulator over the very same :class:`~llmos.scheduler.Scheduler`.

Imports only :mod:`llmos.core`, :mod:`llmos.scheduler`, the standard library
and NumPy (the CLI adds a Rich progress bar on top)::

    trace = read_gavel_trace(path, read_gavel_throughputs(json_path))
    nodes = build_cluster(parse_cluster_spec("v100=12,p100=12,k80=12"))
    result = simulate(trace, nodes, make_scheduler("default"), SimConfig(round_s=360))
"""

from llmos.sim.cluster import build_cluster, parse_cluster_spec
from llmos.sim.engine import SimConfig, SimulationError, Simulator, simulate
from llmos.sim.metrics import JobRecord, SimResult
from llmos.sim.trace import Trace, TraceJob, read_csv_trace, read_gavel_throughputs, read_gavel_trace

__all__ = [
    "JobRecord",
    "SimConfig",
    "SimResult",
    "SimulationError",
    "Simulator",
    "Trace",
    "TraceJob",
    "build_cluster",
    "parse_cluster_spec",
    "read_csv_trace",
    "read_gavel_throughputs",
    "read_gavel_trace",
    "simulate",
]
