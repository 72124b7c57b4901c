"""Precision: what each setting resolves to, bad values, bf16 embeddings against fp32, a bf16 training step."""

import csv

import pytest
import torch
from torch import nn

from xmodal.engine import precision as P
from xmodal.engine.fit import FitConfig, fit
from xmodal.errors import ConfigError
from xmodal.tasks.embed import embed


@pytest.mark.parametrize("fast", [True, False])
def test_resolved_precision_on_cpu(monkeypatch, fast):
    monkeypatch.setattr(P, "cpu_fast_bf16", lambda: fast)
    assert P.resolve_precision("auto", "cpu").name == ("bf16" if fast else "fp32")
    assert P.resolve_precision("fp32", "cpu").name == "fp32"
    assert P.resolve_precision("bf16", "cpu").name == "bf16"  # asked for: runs (emulated where not native)
    assert P.resolve_precision("bf16", "cpu").dtype == torch.bfloat16


@pytest.mark.parametrize("has_bf16, auto", [(True, "bf16"), (False, "fp16")])
def test_resolved_precision_on_gpu(monkeypatch, has_bf16, auto):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: has_bf16)
    assert P.resolve_precision("auto", "cuda").name == auto
    assert P.resolve_precision("fp16", "cuda").name == "fp16"
    assert P.resolve_precision("fp32", "cuda").name == "fp32"
    if not has_bf16:
        with pytest.raises(ConfigError, match="no bf16"):
            P.resolve_precision("bf16", "cuda")


@pytest.mark.parametrize("value", ["fp64", "BF16", "", "half"])
def test_unknown_precision_is_a_config_error(value):
    with pytest.raises(ConfigError, match="is not one of auto, fp32, bf16, fp16"):
        P.resolve_precision(value, "cpu")


def test_fp16_off_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        P.resolve_precision("fp16", "cpu")


def test_autocast_and_scaler_follow_the_precision():
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with P.Precision("bf16", "cpu").autocast():
        assert (x @ w).dtype == torch.bfloat16
    with P.Precision("fp32", "cpu").autocast():
        assert (x @ w).dtype == torch.float32
    assert not P.Precision("bf16", "cpu").scaler().is_enabled()


def test_bf16_embeddings_stay_close_to_fp32(tiny_lit, colour_manifest):
    """A tiny random model's bf16 embeddings keep cosine >= 0.999 to fp32 (real-size ViT-B/32: see
    bench/encoder_throughput.py). Random tiny towers are the hard case for this bound: nothing in
    their weights is tuned to be robust, and bf16's 8-bit mantissa (relative error ~0.4% per rounding)
    averages out over only 8-32 channels, so any systematic drift would show up here first."""
    paths = [r["path"] for r in csv.DictReader(colour_manifest.open())]
    root = colour_manifest.parent
    fp32 = embed(tiny_lit, "image", paths, root=root, precision="fp32", progress=False).vectors
    bf16 = embed(tiny_lit, "image", paths, root=root, precision="bf16", progress=False).vectors
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert torch.allclose(bf16.norm(dim=-1), torch.ones(len(paths)), atol=1e-5)
    cos = (fp32 * bf16).sum(-1)
    assert cos.min() >= 0.999
    texts = ["a red square", "a green square", "a blue square"]
    t32 = embed(tiny_lit, "text", texts, precision="fp32", progress=False).vectors
    t16 = embed(tiny_lit, "text", texts, precision="bf16", progress=False).vectors
    assert (t32 * t16).sum(-1).min() >= 0.999


def test_embed_rejects_a_bad_precision(tiny_lit):
    with pytest.raises(ConfigError):
        embed(tiny_lit, "text", ["a red square"], precision="fp8", progress=False)


def test_a_training_step_runs_under_bf16():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    seen = []

    def step(batch):
        out = model(batch[0])
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return {"loss": nn.functional.mse_loss(out.float(), batch[1])}

    hist = fit(step, model, loader, FitConfig(epochs=10, lr=0.05, progress=False, verbose=False, precision="bf16"))
    assert set(seen) == {(True, torch.bfloat16)}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert hist.epochs[-1]["loss"] < 0.3 * hist.epochs[0]["loss"]


def test_fit_rejects_a_bad_precision():
    model = nn.Linear(2, 1)
    loader = [(torch.randn(4, 2), torch.randn(4, 1))]
    with pytest.raises(ConfigError, match="precision"):
        fit(lambda b: {"loss": nn.functional.mse_loss(model(b[0]), b[1])}, model, loader,
            FitConfig(epochs=1, progress=False, verbose=False, precision="fp8"))


def test_inference_weights_hold_the_model_in_bf16_and_put_fp32_back(tiny_lit, colour_manifest):
    """bf16 inference holds every parameter (norms included) in bf16 for the loop: embeddings within
    cosine 0.999 of fp32 and of autocast alone, and afterwards the very same fp32 weight tensors."""
    batch = {"pixel_values": torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))}
    prec = P.Precision("bf16", "cpu")
    before = {name: (p.data_ptr(), p.data.clone()) for name, p in tiny_lit.named_parameters()}
    tiny_lit.eval()
    with torch.no_grad():
        fp32 = nn.functional.normalize(tiny_lit.encode("image", batch).float(), dim=-1)
        with prec.autocast():
            plain = nn.functional.normalize(tiny_lit.encode("image", batch).float(), dim=-1)
            with prec.inference_weights(tiny_lit):
                kinds = {type(m).__name__ for m in tiny_lit.modules()
                         if any(p.dtype == torch.bfloat16 for p in m.parameters(recurse=False))}
                left = [n for n, p in tiny_lit.named_parameters() if p.dtype != torch.bfloat16]
                seen = []
                hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
                         for m in tiny_lit.modules() if isinstance(m, P._NORM_LAYERS)]
                once = nn.functional.normalize(tiny_lit.encode("image", batch).float(), dim=-1)
                for hook in hooks:
                    hook.remove()
    assert not left, left
    assert seen and set(seen) == {torch.bfloat16}  # norms (and the stream between layers) ran in bf16
    assert "Linear" in kinds and kinds & {"LayerNorm", "BatchNorm2d"}, kinds
    assert (once * fp32).sum(-1).min() >= 0.999 and (once * plain).sum(-1).min() >= 0.999
    for name, p in tiny_lit.named_parameters():
        assert p.data_ptr() == before[name][0] and torch.equal(p.data, before[name][1]), name
    paths = [r["path"] for r in csv.DictReader(colour_manifest.open())]
    fp32 = embed(tiny_lit, "image", paths, root=colour_manifest.parent, precision="fp32", progress=False).vectors
    bf16 = embed(tiny_lit, "image", paths, root=colour_manifest.parent, precision="bf16", progress=False).vectors
    assert bf16.dtype == torch.float32 and (fp32 * bf16).sum(-1).min() >= 0.999
    assert all(p.dtype == torch.float32 for p in tiny_lit.parameters())


def test_inference_weights_leave_training_and_fp32_alone():
    model = nn.Linear(4, 2)
    with P.Precision("bf16", "cpu").inference_weights(model):  # gradients on: a training step, untouched
        assert model.weight.dtype == torch.float32
    with torch.no_grad(), P.Precision("fp32", "cpu").inference_weights(model):
        assert model.weight.dtype == torch.float32
    with torch.no_grad(), P.Precision("bf16", "cpu").inference_weights(model):
        assert model.weight.dtype == torch.bfloat16 and model.bias.dtype == torch.bfloat16
    assert model.weight.dtype == torch.float32


def test_training_holds_frozen_weights_in_bf16_and_come_back_fp32_bit_for_bit():
    """Under bf16 training the frozen parameters are held in bf16 (a norm with a trainable part stays fp32),
    the trainable ones, their gradients and the optimizer's state stay fp32, the frozen weights come back
    as the very same fp32 values, and the loss still falls."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 16), nn.LayerNorm(16),
                          nn.Linear(16, 1))
    for p in [*model[0].parameters(), *model[1].parameters(), model[4].weight]:
        p.requires_grad_(False)  # frozen: the first linear, the first norm, the weight of the second norm
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = torch.tanh(x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))
    seen = []

    def step(batch):
        seen.append({n: p.dtype for n, p in model.named_parameters()})
        return {"loss": nn.functional.mse_loss(model(batch[0]).float(), batch[1])}

    hist = fit(step, model, [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)],
               FitConfig(epochs=8, lr=0.02, progress=False, verbose=False, precision="bf16"))
    low = {n for n, d in seen[0].items() if d == torch.bfloat16}
    assert low == {"0.weight", "0.bias", "1.weight", "1.bias"}, low  # 4.weight: its norm has a trainable bias
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != p.requires_grad, n  # frozen: bit-identical; trainable: moved
    assert hist.epochs[-1]["loss"] < 0.5 * hist.epochs[0]["loss"]


def test_train_autocast_uses_the_math_attention_kernel_on_cpu_below_fp32():
    """The CPU flash-attention backward is slow at bf16: a bf16 training forward on a CPU takes attention's
    math kernel; fp32 and inference keep the default choice."""
    default = torch.backends.cuda.flash_sdp_enabled()
    with P.Precision("bf16", "cpu").train_autocast():
        assert not torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
        assert torch.is_autocast_enabled("cpu")
    with P.Precision("fp32", "cpu").train_autocast():
        assert torch.backends.cuda.flash_sdp_enabled() == default
    with P.Precision("bf16", "cpu").autocast():
        assert torch.backends.cuda.flash_sdp_enabled() == default
    assert torch.backends.cuda.flash_sdp_enabled() == default


def test_training_runs_patchifying_convolutions_in_fp32_on_cpu():
    """A ViT's patch embedding (kernel = stride) runs in fp32 under bf16 training on a CPU (oneDNN's bf16
    weight gradient of such a kernel is slow); an overlapping 3x3 convolution stays in bf16."""
    model = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4, 1))
    seen = {}
    for name, m in model.named_children():
        m.register_forward_hook(lambda m, i, o, name=name: seen.update({name: (i[0].dtype, o.dtype)}))
    prec = P.Precision("bf16", "cpu")
    with prec.training(model), prec.train_autocast():
        model(torch.randn(2, 3, 8, 8)).float().sum().backward()
        assert torch.is_autocast_enabled("cpu")  # back on after the fp32 convolution
    assert seen["0"] == (torch.float32, torch.float32)
    assert seen["1"][1] == torch.bfloat16 and seen["3"][1] == torch.bfloat16
    assert model[0].weight.grad.dtype == torch.float32 and model[0].weight.grad.abs().sum() > 0
    assert not model[0]._forward_pre_hooks and len(model[0]._forward_hooks) == 1  # only this test's hook is left
