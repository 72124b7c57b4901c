"""Numeric precision of forward passes: the one place a ``precision`` setting is resolved.

Every command that runs a model (``embed``, ``index``, ``align``, ``bind``, ``transfer``, ``fuse``) takes
``precision``: ``"fp32"``, ``"bf16"`` (autocast to bfloat16: matmuls and convolutions in bf16, reductions,
norms and losses in fp32), ``"fp16"`` (autocast to float16 with a gradient scaler; GPUs only) or
``"auto"``, the fastest safe one for the device: bf16 on a GPU that has it, else fp16 on a GPU; bf16 on
a CPU with native bf16 matmuls (AVX512-BF16 or AMX), else fp32 (emulated bf16 is slower than fp32).
Weights, optimizer state and returned embeddings stay fp32 whatever the precision. For inference only,
:meth:`Precision.inference_weights` holds the whole model in the low dtype while a batch loop runs, so
activations stay in it between layers and nothing is recast at every forward.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from xmodal.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # the values a ``precision`` setting takes
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmuls
_NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)  # norms whose input must match their weights


def _cast_input(dtype: torch.dtype) -> Any:
    """A forward pre-hook casting a norm layer's floating-point input to ``dtype``."""
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
    return hook


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
        """Inference only (a no-op at fp32 or with gradients enabled): every floating-point parameter of
        ``model`` (and the running statistics of its batch norms) is held in :attr:`dtype` for the
        duration, and the original fp32 tensors are put back afterwards (nothing is rounded for good).
        Inside :meth:`autocast` the activations then stay in :attr:`dtype` between layers (the residual
        stream, GELUs and norms too), not only inside matmuls: on a CPU with native bf16 a ViT-B/32 tower
        ran ~3.8x its fp32 speed this way against ~2.4-3.1x for autocast alone, at cosine 0.99995 to fp32
        (measured once, one thread, batch 16). Norm layers cast their input to their own dtype (a norm fed
        by an fp32 op would otherwise refuse bf16 weights). Costs half the model's fp32 size while on.
        Not for a model that another thread runs at the same time (it would see bf16 weights)."""
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        hooks: list[Any] = []
        if self.name != "fp32" and not torch.is_grad_enabled():
            for module in model.modules():
                tensors = list(module.parameters(recurse=False))
                if isinstance(module, _NORM_LAYERS):
                    tensors += [b for b in module.buffers(recurse=False) if b.is_floating_point()]
                    hooks.append(module.register_forward_pre_hook(_cast_input(self.dtype)))
                saved += _hold([t for t in tensors if t.dtype == torch.float32], self.dtype)
        try:
            yield
        finally:
            _put_back(saved, hooks)

    def train_autocast(self) -> ContextManager[Any]:
        """The context a training forward runs in: :meth:`autocast`, plus, on a CPU below fp32, attention by
        the math kernel (matmuls and a softmax, differentiated by autograd). The CPU flash-attention kernel's
        backward is slow at bf16: on a real-size ViT-B/32 LoRA step (batch 16, one thread) it took 390 ms
        against 88 ms at fp32, a third of the bf16 step; with the math kernel the step ran 1.2 s against 1.6 s
        (one ad-hoc A/B; the same-run figures are in bench/results/precision_throughput.md)."""
        if self.name == "fp32" or self.device_type != "cpu":
            return self.autocast()
        stack = contextlib.ExitStack()
        stack.enter_context(self.autocast())
        stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        return stack

    @contextlib.contextmanager
    def training(self, model: nn.Module) -> Iterator[None]:
        """While ``model`` trains (a no-op at fp32):

        - its frozen floating-point parameters (those that do not require grad: the base under LoRA, adapters
          or prompts, a locked tower) are held in :attr:`dtype`, so autocast does not recast them at every
          forward and the stream between frozen layers stays in the low dtype. Layer and group norms whose
          parameters are all frozen cast their input too; batch norms are left alone (their running
          statistics update in training). On a real-size ViT-B/32 LoRA step this took 0.87-0.98 s against
          1.06-1.6 s with fp32 frozen weights (one ad-hoc A/B, batch 16, one thread);
        - on a CPU, patchifying convolutions (kernel = stride, no padding: a ViT's patch embedding) run in
          fp32: oneDNN's bf16 weight gradient of a 32x32 stride-32 kernel took 277 ms against 89 ms at fp32
          (batch 16, one thread; 16x16 patches: 69 vs 65 ms; a 3x3 convolution is faster in bf16, 36 vs 92 ms).

        Trainable parameters, their gradients and the optimizer state stay fp32, and the fp32 tensors are put
        back afterwards, bit for bit (checkpoints hold trainable parameters only, so they never see bf16)."""
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        hooks: list[Any] = []
        if self.name != "fp32":
            for module in model.modules():
                if self.device_type == "cpu" and _patchifies(module):
                    hooks += _run_in_fp32(module, self.device_type)
                    continue
                own = list(module.parameters(recurse=False))
                frozen = [p for p in own if p.dtype == torch.float32 and not p.requires_grad]
                if not frozen or isinstance(module, nn.modules.batchnorm._BatchNorm):
                    continue
                if isinstance(module, _NORM_LAYERS):
                    if len(frozen) < len(own):
                        continue  # a norm with a trainable part (bitfit's biases) stays fp32
                    hooks.append(module.register_forward_pre_hook(_cast_input(self.dtype)))
                saved += _hold(frozen, self.dtype)
        try:
            yield
        finally:
            _put_back(saved, hooks)

    def scaler(self) -> torch.amp.GradScaler:
        """The loss scaler of a training step: active at fp16 only (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device_type if self.device_type == "cuda" else "cpu",
                                    enabled=self.name == "fp16")


def _hold(tensors: list[torch.Tensor], dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Swap each tensor's data for a ``dtype`` copy; the (tensor, original data) pairs to put back."""
    saved = []
    for tensor in tensors:
        saved.append((tensor, tensor.data))
        tensor.data = tensor.data.to(dtype)
    return saved


def _patchifies(module: nn.Module) -> bool:
    """A convolution whose kernel equals its stride, unpadded: it cuts the input into patches (a ViT stem)."""
    return (isinstance(module, nn.modules.conv._ConvNd) and module.kernel_size == module.stride
            and not any(module.padding) and module.kernel_size != (1,) * len(module.kernel_size))


def _run_in_fp32(module: nn.Module, device_type: str) -> list[Any]:
    """Hooks that run ``module``'s forward with autocast off, its floating-point inputs cast to fp32."""
    contexts: list[Any] = []

    def enter(m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        contexts.append(torch.autocast(device_type, enabled=False))
        contexts[-1].__enter__()
        return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

    def leave(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        contexts.pop().__exit__(None, None, None)

    return [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]


def _put_back(saved: list[tuple[torch.Tensor, torch.Tensor]], hooks: list[Any]) -> None:
    for hook in hooks:
        hook.remove()
    for tensor, data in saved:
        tensor.data = data


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
