"""Native CPU kernels of the engine, compiled on first use and loaded with ctypes.

Two float32 kernels (``csrc/paged_attention.cpp``): decode attention over the paged KV
cache, which reads each sequence's K and V blocks in place, once, where the
``torch.compile``-d gather (``llama.paged_decode_attention``) spends most of its time
on index arithmetic (about 2x faster per call for 64 sequences:
``benchmarks/decode_attention.py``); and the write of a step's new K/V rows into their slots.
The shared object is built with the system C++ compiler (``$CXX``, else
``g++``/``c++``; ``-O3 -march=native -fopenmp``) into a cache directory
keyed by the source, the compiler, its flags and the CPU's feature flags, so it
compiles once per machine (about a second) and never runs on a CPU it was not built
for. ``ctypes`` releases the GIL for the call, so the HTTP thread keeps serving.

``load_native_kernels()`` returns them, or the reason they are not available (no
compiler, a failed build): callers fall back to the compiled or eager path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch

_SOURCE = Path(__file__).parent / "csrc" / "paged_attention.cpp"
_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")


def cache_dir() -> Path:
    """Where built kernels live: ``$LLMOS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME`` or ~/.cache, /llmos/kernels."""
    env = os.environ.get("LLMOS_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmos" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build(cxx: str) -> Path:
    src = _SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [src, cxx.encode(), " ".join(_FLAGS).encode(), _cpu_flags().encode(), platform.machine().encode()]
        )
    ).hexdigest()[:16]
    out = cache_dir() / f"paged_attention-{key}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed: concurrent processes never load a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cxx, *_FLAGS, str(_SOURCE), "-o", tmp], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(cxx).name} failed: {proc.stderr.strip()[-400:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


class NativeKernels:
    """The loaded kernels, with the argument checks that keep a bad call from reading out of bounds."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self._attention = lib.llmos_paged_decode_attention_f32
        self._attention.argtypes = [ptr] * 6 + [i64] * 7 + [ctypes.c_float, ctypes.c_int]
        self._attention.restype = ctypes.c_int
        self._write_kv = lib.llmos_write_kv_f32
        self._write_kv.argtypes = [ptr, ptr, i64, i64, ptr, ptr, ptr, i64, i64, i64, i64]
        self._write_kv.restype = ctypes.c_int

    @staticmethod
    def _check(*tensors: torch.Tensor) -> None:
        for t in tensors:
            if t.device.type != "cpu" or t.dtype != torch.float32:
                raise ValueError("native kernels take float32 CPU tensors")

    def paged_attention(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        block_tables: torch.Tensor,
        ctx_lens: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """Same contract as :func:`llmos.serving.engine.llama.paged_decode_attention`."""
        self._check(q, k_cache, v_cache)
        if not (k_cache.is_contiguous() and v_cache.is_contiguous()) or k_cache.shape != v_cache.shape:
            raise ValueError("K and V caches must be contiguous and of one shape")
        q = q.contiguous()
        tables = block_tables.to(device="cpu", dtype=torch.int64).contiguous()
        ctx = ctx_lens.to(device="cpu", dtype=torch.int64).contiguous()
        d, heads, hd = q.shape
        nkv, nb, bs, _ = k_cache.shape
        if tables.dim() != 2 or tables.shape[0] != d or ctx.shape != (d,) or k_cache.shape[3] != hd:
            raise ValueError("q, block tables and context lengths disagree on the batch or head size")
        out = torch.empty_like(q)
        rc = self._attention(
            q.data_ptr(),
            k_cache.data_ptr(),
            v_cache.data_ptr(),
            tables.data_ptr(),
            ctx.data_ptr(),
            out.data_ptr(),
            d,
            heads,
            nkv,
            nb,
            bs,
            hd,
            tables.shape[1],
            scale,
            torch.get_num_threads(),
        )
        if rc != 0:
            raise ValueError("paged attention: a block table entry or context length is out of range")
        return out

    def write_kv(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        slots: torch.Tensor,
    ) -> None:
        """Write ``k``/``v`` [T, kv_heads, head_dim] into the caches [kv_heads, blocks, block_size,
        head_dim] at ``slots`` (block * block_size + offset): ``index_copy_`` without its strided
        gather (it was ~7% of a decode step)."""
        self._check(k, v, k_cache, v_cache)
        t, nkv, hd = k.shape
        for x in (k, v):
            if x.shape != (t, nkv, hd) or x.stride(2) != 1 or x.stride(1) != hd:
                raise ValueError("k and v must be [T, kv_heads, head_dim] with each row's heads contiguous")
        if (
            not (k_cache.is_contiguous() and v_cache.is_contiguous())
            or k_cache.shape != v_cache.shape
            or k_cache.shape[0] != nkv
            or k_cache.shape[3] != hd
        ):
            raise ValueError("K and V caches must be contiguous [kv_heads, blocks, block_size, head_dim]")
        idx = slots.to(device="cpu", dtype=torch.int64).contiguous()
        if idx.shape != (t,):
            raise ValueError("one slot per token")
        rc = self._write_kv(
            k.data_ptr(),
            v.data_ptr(),
            k.stride(0),
            v.stride(0),
            k_cache.data_ptr(),
            v_cache.data_ptr(),
            idx.data_ptr(),
            t,
            nkv,
            hd,
            k_cache.shape[1] * k_cache.shape[2],
        )
        if rc != 0:
            raise ValueError("write_kv: a slot is out of range")


@cache
def load_native_kernels() -> NativeKernels | str:
    """The native float32 CPU kernels, or why they are not available."""
    cxx = _compiler()
    if cxx is None:
        return "no C++ compiler on PATH"
    try:
        return NativeKernels(ctypes.CDLL(str(_build(cxx))))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return f"native kernels not built: {exc}"
