"""``llmos serve`` (a standalone OpenAI-compatible replica, like ``vllm serve``) and ``llmos deploy``.

``serve`` loads MODEL_DIR (a Hugging Face Llama-family directory, or an encoder
such as all-MiniLM-L6-v2 for embeddings) before it listens, so the server is
ready when it prints its URL. Extra models (``--model NAME=DIR``) load on
demand and share the ``--memory-budget-gib`` budget.

``deploy`` submits a ``kind: serve`` job to the control plane: its replicas are
scheduled like any other task and the gateway serves them by name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from llmos.cli._common import TokenOpt, UrlOpt
from llmos.errors import LLMOSError


def _pairs(values: list[str], what: str) -> list[tuple[str, Path]]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"{what} must look like NAME=DIR, got {v!r}")
        out.append((name, Path(path).expanduser()))
    return out


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def serve(
    model_dir: Annotated[Path, typer.Argument(help="Hugging Face model directory (safetensors)")],
    name: Annotated[str | None, typer.Option(help="model name clients use (default: the directory name)")] = None,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8000,
    lora: Annotated[list[str], typer.Option(help="LoRA adapter NAME=DIR (repeatable)")] = [],  # noqa: B006
    model: Annotated[list[str], typer.Option(help="another model NAME=DIR, loaded on demand")] = [],  # noqa: B006
    max_num_seqs: Annotated[int, typer.Option(help="sequences in one batch")] = 64,
    kv_cache_gib: Annotated[float, typer.Option(help="paged KV-cache size per model")] = 0.5,
    memory_budget_gib: Annotated[float | None, typer.Option(help="memory budget for all models")] = None,
    keep_alive_s: Annotated[float, typer.Option(help="unload idle on-demand models after this (<0: never)")] = -1.0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
    enforce_eager: Annotated[bool, typer.Option(
        "--enforce-eager",
        help="plain PyTorch decode attention: no native C++ kernel, no torch.compile (slower decode on CPU)")] = False,
) -> None:
    """Serve MODEL_DIR behind an OpenAI-compatible API (/v1/completions, /v1/chat/completions, ...)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Before torch loads OpenMP, as benchmarks/engine.py does: spinning idle workers slowed
    # decode steps 3-10x under load there (docs/serving-engine.md). In the serving A/B on a
    # quiet machine the wait policy made no measurable difference (docs/serving.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from llmos.serving.server import ManagerConfig, ModelManager, ModelSpec, create_app

    if not model_dir.is_dir():
        _fail(f"{model_dir} is not a directory")
    if not 0 <= port <= 65535:
        _fail(f"port must be between 0 and 65535, got {port}")
    if port == 0:
        from llmos.serving.server.runner import free_port

        port = free_port(host)
    main_name = name or model_dir.resolve().name
    try:
        manager = ModelManager(ManagerConfig(memory_budget_gib=memory_budget_gib, default_keep_alive_s=keep_alive_s))
        manager.register(
            ModelSpec(
                main_name, model_dir, loras=tuple(_pairs(lora, "--lora")), pinned=True,
                max_num_seqs=max_num_seqs, kv_cache_gib=kv_cache_gib, device=device, enforce_eager=enforce_eager,
            )
        )  # fmt: skip
        for extra_name, extra_dir in _pairs(model, "--model"):
            manager.register(
                ModelSpec(extra_name, extra_dir, max_num_seqs=max_num_seqs, kv_cache_gib=kv_cache_gib, device=device,
                          enforce_eager=enforce_eager)
            )
        typer.echo(f"loading {main_name} from {model_dir} ...", err=True)
        loaded = manager.preload(main_name, pinned=True)
    except LLMOSError as e:
        _fail(e.message)
        return
    adapters = ", ".join(n for n, _ in manager.specs()[0].loras) or "none"
    typer.echo(
        f"serving {main_name} ({loaded.kind}, max_model_len {loaded.max_model_len}, adapters: {adapters}) "
        f"on http://{host}:{port}/v1",
        err=True,
    )
    uvicorn.run(create_app(manager), host=host, port=port, log_level="warning")


def deploy(
    model_ref: Annotated[str, typer.Argument(metavar="MODEL[:VERSION]", help="registry reference or directory")],
    replicas: Annotated[int, typer.Option(help="number of replicas")] = 1,
    adapters: Annotated[str, typer.Option(help="comma-separated adapter references")] = "",
    name: Annotated[str | None, typer.Option(help="deployment name (default: the model name)")] = None,
    max_num_seqs: Annotated[int, typer.Option()] = 64,
    kv_cache_gib: Annotated[float, typer.Option()] = 0.5,
    cpus: Annotated[float, typer.Option(help="CPU cores per replica")] = 1.0,
    memory_gib: Annotated[float, typer.Option(help="RAM per replica")] = 2.0,
    devices: Annotated[int, typer.Option(help="accelerators per replica")] = 0,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Deploy MODEL with N replicas; the control plane's /v1 gateway serves it by name."""
    from llmos.control.deployments import deployment_spec, submit_deployment

    try:
        spec = deployment_spec(
            model_ref, replicas=replicas, adapters=[a for a in adapters.split(",") if a.strip()], name=name,
            max_num_seqs=max_num_seqs, kv_cache_gib=kv_cache_gib, cpus=cpus, memory_gib=memory_gib,
            devices=devices,
        )  # fmt: skip
        job: dict[str, Any] = submit_deployment(spec, url=url, token=token)
    except LLMOSError as e:
        _fail(e.message)
        return
    typer.echo(f"deployment {spec['name']}: job {job.get('id')} ({job.get('state')}), {replicas} replica(s)")
    typer.echo(f"query it with the OpenAI API at <control plane URL>/v1, model={spec['name']!r}")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``deploy`` to the llmos CLI."""
    app.command("serve")(serve)
    app.command("deploy")(deploy)
