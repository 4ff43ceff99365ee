"""The regrouped TwoWayTransformer (annotator.engines.two_way) against segment_anything's own."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _inputs(model, batch: int, points: int, seed: int):
    """(image 1x256x64x64, image_pe 1x256x64x64, tokens BxTxC) as MaskDecoder builds them."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn((1, 256, 64, 64), generator=generator)
    coords = torch.rand((batch, points, 2), generator=generator) * 1024
    labels = torch.randint(0, 2, (batch, points), generator=generator, dtype=torch.int)
    decoder = model.mask_decoder
    sparse, _ = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
    tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse], dim=1)
    return image, model.prompt_encoder.get_dense_pe(), tokens


@pytest.mark.parametrize(("batch", "points"), [(1, 1), (1, 4), (3, 2)])
def test_two_way_transformer_equals_stock(tiny_sam_reference, batch, points):
    """One shared image for B prompt sets = stock on the image repeated B times."""
    from annotator.engines.two_way import is_regroupable, two_way_transformer

    transformer = tiny_sam_reference.mask_decoder.transformer
    assert is_regroupable(transformer)
    with torch.inference_mode():
        image, image_pe, tokens = _inputs(tiny_sam_reference, batch, points, seed=batch + points)
        stock_queries, stock_keys = transformer(
            image.repeat(batch, 1, 1, 1), image_pe.repeat(batch, 1, 1, 1), tokens
        )
        queries, keys = two_way_transformer(transformer, image, image_pe, tokens)
    assert queries.shape == stock_queries.shape == (batch, 5 + points + 1, 256)
    assert keys.shape == stock_keys.shape == (batch, 64 * 64, 256)
    assert torch.allclose(queries, stock_queries, atol=1e-4)
    assert torch.allclose(keys, stock_keys, atol=1e-4)
    if batch > 1:  # the prompts differ, so must the outputs
        assert not torch.allclose(queries[0], queries[1], atol=1e-3)


def test_regrouped_forward_takes_a_batched_image(tiny_sam_reference):
    """Token-layout entry point with a precomputed key_pe and one image per prompt set."""
    from annotator.engines.two_way import regrouped_forward

    transformer = tiny_sam_reference.mask_decoder.transformer
    with torch.inference_mode():
        image, image_pe, tokens = _inputs(tiny_sam_reference, 2, 3, seed=7)
        images = torch.cat([image, image.flip(-1)])  # two different images
        stock_queries, stock_keys = transformer(images, image_pe.repeat(2, 1, 1, 1), tokens)
        keys = images.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries, keys = regrouped_forward(transformer, keys, key_pe, tokens)
    assert torch.allclose(queries, stock_queries, atol=1e-4)
    assert torch.allclose(keys, stock_keys, atol=1e-4)


def test_attention_pieces_equal_stock_attention(tiny_sam_reference):
    """Each regrouped cross attention = the Attention module it stands for (biases included)."""
    from annotator.engines.two_way import image_to_tokens, tokens_to_image

    layer = tiny_sam_reference.mask_decoder.transformer.layers[0]
    generator = torch.Generator().manual_seed(3)
    image = torch.randn((1, 4096, 256), generator=generator)
    values = torch.randn((1, 4096, 256), generator=generator)
    tokens = torch.randn((2, 7, 256), generator=generator)
    with torch.inference_mode():
        for attention in (layer.cross_attn_token_to_image, layer.cross_attn_image_to_token):
            for module in (attention.q_proj, attention.k_proj, attention.v_proj):
                assert module.bias.abs().max() > 0  # the biases are exercised, not zero
        stock = layer.cross_attn_token_to_image(
            q=tokens, k=image.expand(2, -1, -1), v=values.expand(2, -1, -1)
        )
        ours = tokens_to_image(layer.cross_attn_token_to_image, tokens, image, values)
        assert torch.allclose(ours, stock, atol=1e-4)
        stock = layer.cross_attn_image_to_token(q=image.expand(2, -1, -1), k=tokens, v=tokens + 1)
        ours = image_to_tokens(layer.cross_attn_image_to_token, image, tokens, tokens + 1)
        assert ours.shape == stock.shape == (2, 4096, 256)
        assert torch.allclose(ours, stock, atol=1e-4)


def test_other_transformers_run_as_themselves(tiny_sam_reference):
    """A transformer of another structure is not regrouped: its own forward runs."""
    from annotator.engines.two_way import is_regroupable, two_way_transformer

    class Custom(torch.nn.Module):
        def forward(self, image, image_pe, tokens):
            return tokens * 2, image.flatten(2).permute(0, 2, 1)

    with torch.inference_mode():
        image, image_pe, tokens = _inputs(tiny_sam_reference, 1, 1, seed=0)
        assert not is_regroupable(Custom())
        queries, _ = two_way_transformer(Custom(), image, image_pe, tokens)
    assert torch.equal(queries, tokens * 2)
