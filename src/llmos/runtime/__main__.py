"""Worker entry point: ``python -m llmos.runtime`` runs the task the environment describes.

Dispatch by job kind: ``serve`` goes to :func:`llmos.runtime.serve.main`
(the serving engine's replica), ``train`` / ``finetune`` / ``eval`` / ``batch``
to :mod:`llmos.runtime.jobs`. Exit codes: 0 done, 1 the work failed (reason
declared to the control plane and written to ``LLMOS_ERROR_FILE``), 2 bad
input, 143 stopped after a checkpoint when asked.
"""

from __future__ import annotations

import os
import sys
import traceback

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def main() -> int:
    kind = os.environ.get("LLMOS_JOB_KIND", "")
    if kind == "serve":
        from llmos.runtime.serve import main as serve_main

        rc = serve_main()
        return int(rc or 0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from llmos.errors import LLMOSError, ValidationError
    from llmos.runtime.context import WorkerContext
    from llmos.runtime.jobs import RUNNERS

    try:
        ctx = WorkerContext.from_env()
    except LLMOSError as e:
        print(f"llmos.runtime: {e.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    runner = RUNNERS.get(ctx.spec.kind)  # type: ignore[attr-defined]
    if runner is None:
        print(f"llmos.runtime: job kind {ctx.spec.kind!r} has no runtime", file=sys.stderr)  # type: ignore[attr-defined]
        return EXIT_BAD_INPUT
    ctx.reporter.start_heartbeats()
    try:
        return int(runner(ctx))
    except LLMOSError as e:
        reason = f"{e.type}: {e.message}"
        print(f"llmos.runtime: {reason}", file=sys.stderr, flush=True)
        ctx.reporter.fail(reason)
        return EXIT_BAD_INPUT if isinstance(e, ValidationError) else EXIT_FAILED
    except Exception as e:
        traceback.print_exc()
        ctx.reporter.fail(f"{type(e).__name__}: {e}")
        return EXIT_FAILED
    finally:
        ctx.reporter.close()
        _shutdown_distributed()


def _shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
