"""Compile ``market.cu`` with NVRTC exactly as CuPy does, on a machine without a GPU.

:class:`cupy.RawModule` compiles through :mod:`cupy.cuda.compiler`: our
:data:`NVRTC_OPTIONS`, then ``-ftz=true`` (added by ``_compile_with_cache_cuda``), then
``-arch=sm_XX``, ``--device-as-default-execution-space`` and, where enabled, ``--pch`` (added
by ``compile_using_nvrtc``). The only step that asks the CUDA runtime for a device is the choice
of architecture, which CuPy memoizes per device; here the architecture is given, so the
unmemoized function is used and everything else is CuPy's own compile path. With
:data:`PTXAS_VERBOSE` the program log holds ptxas's resource usage of every kernel
(:func:`parse_ptxas_log`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from importlib import resources

#: Options :func:`hashpivot.kernels.cuda` passes to :class:`cupy.RawModule`.
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++14", "-use_fast_math")
#: Options CuPy's RawModule path adds before NVRTC (``_compile_with_cache_cuda``).
CUPY_ADDED_OPTIONS: tuple[str, ...] = ("-ftz=true",)
#: Asks ptxas for registers, stack frame and spills of every kernel (into the program log).
PTXAS_VERBOSE = "--ptxas-options=-v"

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_PROPERTIES = re.compile(r"Function properties for (\w+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


class NvrtcUnavailable(RuntimeError):
    """CuPy or the NVRTC library cannot be loaded."""


@dataclass(frozen=True)
class KernelResources:
    """ptxas's resource usage of one kernel (entry function)."""

    name: str
    registers: int
    stack_frame_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int


@dataclass(frozen=True)
class CompileResult:
    """A compiled module: the cubin, NVRTC's log and the resource usage per kernel."""

    arch: str
    options: tuple[str, ...]
    cubin: bytes
    log: str
    kernels: dict[str, KernelResources]


def kernel_source() -> str:
    """Text of ``market.cu``."""
    return resources.files("hashpivot.kernels").joinpath("market.cu").read_text(encoding="utf-8")


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library CuPy loads; :class:`NvrtcUnavailable` if none."""
    try:
        from cupy.cuda import compiler  # noqa: PLC0415

        return tuple(compiler._get_nvrtc_version())  # type: ignore[return-value]
    except Exception as exc:  # ImportError, OSError or CuPy's RuntimeError: no library
        raise NvrtcUnavailable(f"NVRTC cannot be loaded: {exc}") from exc


def parse_ptxas_log(log: str) -> dict[str, KernelResources]:
    """Resource usage of every entry function in a ``ptxas -v`` log.

    The stack frame and spills come from the ``Function properties for NAME`` block, the
    registers from the ``Used N registers`` line that follows ``Compiling entry function``.
    """
    frames: dict[str, tuple[int, int, int]] = {}
    registers: dict[str, int] = {}
    entry = props = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry = m.group(1)
        elif m := _PROPERTIES.search(line):
            props = m.group(1)
        elif (m := _FRAME.search(line)) and props is not None:
            frames[props] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif (m := _REGISTERS.search(line)) and entry is not None:
            registers[entry] = int(m.group(1))
            entry = None
    return {
        name: KernelResources(name, regs, *frames.get(name, (0, 0, 0)))
        for name, regs in registers.items()
    }


def compile_market(arch: str, *, source: str | None = None) -> CompileResult:
    """Compile ``market.cu`` (or ``source``) to a cubin for ``sm_<arch>`` through CuPy's NVRTC path.

    Raises :class:`NvrtcUnavailable` where NVRTC cannot be loaded and CuPy's
    ``CompileException`` (with NVRTC's log) where the source does not compile.
    """
    nvrtc_version()
    from cupy.cuda import compiler  # noqa: PLC0415

    options = NVRTC_OPTIONS + CUPY_ADDED_OPTIONS + (PTXAS_VERBOSE,)
    per_device = compiler._get_arch_for_options_for_nvrtc
    log = io.StringIO()
    compiler._get_arch_for_options_for_nvrtc = getattr(per_device, "__wrapped__", per_device)
    try:
        cubin, _ = compiler.compile_using_nvrtc(
            source if source is not None else kernel_source(),
            options=options,
            arch=arch,
            filename="market.cu",
            log_stream=log,
        )
    finally:
        compiler._get_arch_for_options_for_nvrtc = per_device
    text = log.getvalue()
    return CompileResult(arch, options, bytes(cubin), text, parse_ptxas_log(text))
