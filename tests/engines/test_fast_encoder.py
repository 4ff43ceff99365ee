"""The fast exact encoder's parts against segment_anything's stock modules."""

from __future__ import annotations

import copy
import json

import pytest

torch = pytest.importorskip("torch")

from annotator.engines import fast_encoder  # noqa: E402
from annotator.engines.fast_encoder import (  # noqa: E402
    ChunkedSdpaAttention,
    MkldnnLinear,
    choose_linear_backend,
    make_fast_encoder,
    mkldnn_linear_available,
)

needs_mkldnn = pytest.mark.skipif(
    not mkldnn_linear_available("cpu"), reason="torch built without oneDNN (mkldnn)"
)


def _stock_attention(dim: int, heads: int, size: int, seed: int):
    from segment_anything.modeling.image_encoder import Attention

    torch.manual_seed(seed)
    attn = Attention(dim, num_heads=heads, qkv_bias=True, use_rel_pos=True, input_size=(size, size))
    with torch.no_grad():
        attn.rel_pos_h.normal_(0, 0.5)  # zero-initialised in segment_anything: make them count
        attn.rel_pos_w.normal_(0, 0.5)
    return attn.eval()


@pytest.mark.parametrize(
    "batch, size, chunk_queries",
    [
        (1, 64, 512),  # a global block: 4096 tokens, 8 rows of 64 per chunk
        (1, 64, 700),  # 10 rows per chunk: the last chunk is shorter (64 = 6*10 + 4)
        (25, 14, 512),  # windowed blocks: 25 windows of 14x14, one chunk
        (4, 14, 50),  # 3 rows per chunk, uneven last chunk
        (2, 9, 1),  # chunk smaller than one row: one row at a time
    ],
)
def test_chunked_attention_equals_stock(batch, size, chunk_queries):
    stock = _stock_attention(dim=32, heads=2, size=size, seed=size + batch)
    fast = ChunkedSdpaAttention(stock, chunk_queries=chunk_queries)
    x = torch.randn(batch, size, size, 32, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = stock(x)
        got = fast(x)
    assert got.shape == expected.shape == (batch, size, size, 32)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # The bias matters: the same attention without relative positions is far from this.
    no_bias = copy.deepcopy(fast)
    no_bias.use_rel_pos = False
    with torch.inference_mode():
        assert (no_bias(x) - expected).abs().max() > 1e-2


def test_chunked_attention_shares_parameters():
    stock = _stock_attention(dim=16, heads=2, size=14, seed=0)
    fast = ChunkedSdpaAttention(stock)
    assert fast.qkv is stock.qkv and fast.proj is stock.proj
    assert fast.rel_pos_w is stock.rel_pos_w
    assert fast.scale == stock.scale


@needs_mkldnn
@pytest.mark.parametrize("shape", [(7, 48), (2, 14, 14, 48), (1, 64, 64, 48)])
def test_mkldnn_linear_equals_linear(shape):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80)
    packed = MkldnnLinear(linear, batch_size=4096)
    x = torch.randn(*shape)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), linear(x), rtol=1e-5, atol=1e-5)
    assert packed(x).shape == (*shape[:-1], 80)


@pytest.mark.parametrize("linear", ["torch", pytest.param("mkldnn", marks=needs_mkldnn)])
def test_fast_encoder_matches_stock_encoder(tiny_sam_reference, linear):
    stock = tiny_sam_reference.image_encoder
    fast = make_fast_encoder(copy.deepcopy(stock), device="cpu", linear=linear)
    assert fast_encoder.linear_backend_of(fast) == linear
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = stock(x)
        got = fast(x)
    assert got.shape == (1, 256, 64, 64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_stock_classes_are_not_patched(tiny_sam_reference):
    from segment_anything.modeling import image_encoder as stock_module

    forward = stock_module.Attention.forward
    block_forward = stock_module.Block.forward
    fast = make_fast_encoder(copy.deepcopy(tiny_sam_reference.image_encoder), linear="torch")
    assert stock_module.Attention.forward is forward
    assert stock_module.Block.forward is block_forward
    assert isinstance(tiny_sam_reference.image_encoder.blocks[0].attn, stock_module.Attention)
    assert not isinstance(fast.blocks[0].attn, stock_module.Attention)


@needs_mkldnn
def test_linear_backend_is_measured_once_and_cached(tiny_sam_reference, monkeypatch, tmp_path):
    encoder = tiny_sam_reference.image_encoder
    calls = []
    real = fast_encoder.measure_linear_backends

    def counting(linear, rows, repeat=3):
        calls.append(rows)
        return real(linear, rows, repeat=1)

    monkeypatch.setattr(fast_encoder, "measure_linear_backends", counting)
    first = choose_linear_backend(encoder, "cpu")
    second = choose_linear_backend(encoder, "cpu")
    assert first == second and first in ("torch", "mkldnn")
    assert calls == [4096]  # one global block's tokens, measured once
    cache = fast_encoder._cache_path()
    assert str(tmp_path) in str(cache)  # conftest points the cache dir into tmp
    stored = json.loads(cache.read_text())
    assert list(stored.values()) == [first]
    assert fast_encoder.cpu_identity() in next(iter(stored))


@needs_mkldnn
def test_cached_choice_is_used(tiny_sam_reference, monkeypatch):
    encoder = tiny_sam_reference.image_encoder
    lin1 = encoder.blocks[0].mlp.lin1
    key = f"{fast_encoder.cpu_identity()}|{lin1.in_features}x{lin1.out_features}"
    cache = fast_encoder._cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    for choice in ("torch", "mkldnn"):
        cache.write_text(json.dumps({key: choice}))

        def fail(*args, **kwargs):
            raise AssertionError("measured again despite a cached choice")

        monkeypatch.setattr(fast_encoder, "measure_linear_backends", fail)
        assert choose_linear_backend(encoder, "cpu") == choice


def test_measurement_reports_both_backends(tiny_sam_reference):
    if not mkldnn_linear_available("cpu"):
        assert choose_linear_backend(tiny_sam_reference.image_encoder, "cpu") == "torch"
        return
    lin1 = tiny_sam_reference.image_encoder.blocks[0].mlp.lin1
    result = fast_encoder.measure_linear_backends(lin1, rows=256, repeat=1)
    assert result["torch"] > 0 and result["mkldnn"] > 0
    assert result["max_diff"] < 1e-4
    faster = "mkldnn" if result["mkldnn"] < result["torch"] else "torch"
    assert result["choice"] == faster


def test_non_cpu_devices_keep_torch_linear(tiny_sam_reference):
    assert choose_linear_backend(tiny_sam_reference.image_encoder, "cuda:0") == "torch"
    assert choose_linear_backend(tiny_sam_reference.image_encoder, "mps") == "torch"
