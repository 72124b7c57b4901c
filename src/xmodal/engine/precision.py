"""Numeric precision of forward passes: the one place a ``precision`` setting is resolved.

Every command that runs a model (``embed``, ``index``, ``align``, ``bind``, ``transfer``, ``fuse``) takes
``precision``: ``"fp32"``, ``"bf16"`` (autocast to bfloat16: matmuls and convolutions in bf16, reductions,
norms and losses in fp32), ``"fp16"`` (autocast to float16 with a gradient scaler; GPUs only) or
``"auto"``, the fastest safe one for the device: bf16 on a GPU that has it, else fp16 on a GPU; bf16 on
a CPU with native bf16 matmuls (AVX512-BF16 or AMX), else fp32 (emulated bf16 is slower than fp32).
Weights, optimizer state and returned embeddings stay fp32 whatever the precision. For inference only,
:meth:`Precision.inference_weights` holds the linear and convolution weights in the low dtype while a
batch loop runs, so autocast does not recast them at every forward (same numbers, less time).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator

import torch
from torch import nn

from xmodal.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # the values a ``precision`` setting takes
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmuls
_AUTOCAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # layers whose weights autocast casts down


@functools.lru_cache(maxsize=1)
def cpu_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AVX512-BF16 or AMX), so bf16 beats fp32."""
    capability = torch.backends.cpu.get_cpu_capability().lower()
    if "amx" in capability or "bf16" in capability:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def _gpu_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Precision:
    name: str  # the resolved precision: "fp32", "bf16" or "fp16" (never "auto")
    device_type: str  # the torch device type it runs on ("cpu", "cuda", ...)

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES.get(self.name, torch.float32)

    def autocast(self) -> ContextManager[Any]:
        """The context forward passes run in (a no-op at fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @contextlib.contextmanager
    def inference_weights(self, model: nn.Module) -> Iterator[None]:
        """Inference only (a no-op at fp32 or with gradients enabled): the fp32 weights and biases of
        ``model``'s linear and convolution layers are held in :attr:`dtype` for the duration, and the
        original fp32 tensors are put back afterwards (nothing is rounded for good). Inside
        :meth:`autocast` the results are those of autocast alone, which casts exactly these tensors to
        :attr:`dtype` at every forward; this casts them once. Costs half the model's fp32 size while on. Not
        for a model that another thread runs at the same time (it would see bf16 weights)."""
        saved: list[tuple[nn.Parameter, torch.Tensor]] = []
        if self.name != "fp32" and not torch.is_grad_enabled():
            for module in model.modules():
                if isinstance(module, _AUTOCAST_LAYERS):
                    for param in (module.weight, module.bias):
                        if param is not None and param.dtype == torch.float32:
                            saved.append((param, param.data))
                            param.data = param.data.to(self.dtype)
        try:
            yield
        finally:
            for param, data in saved:
                param.data = data

    def scaler(self) -> torch.amp.GradScaler:
        """The loss scaler of a training step: active at fp16 only (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device_type if self.device_type == "cuda" else "cpu",
                                    enabled=self.name == "fp16")


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> Precision:
    """The precision ``precision`` (one of PRECISIONS) means on ``device``; a ConfigError when it is
    unknown or the device cannot run it (fp16 off a GPU, bf16 on a GPU without it)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return Precision("bf16" if _gpu_bf16(device) else "fp16", "cuda")
        return Precision("bf16" if device.type == "cpu" and cpu_fast_bf16() else "fp32", device.type)
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA GPU (this runs on {device.type}); use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not _gpu_bf16(device):
        raise ConfigError("precision 'bf16': this GPU has no bf16; use fp16 or fp32")
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ConfigError(f"precision 'bf16' runs on CPU or CUDA, not {device.type}; use fp32")
    return Precision(precision, device.type)
