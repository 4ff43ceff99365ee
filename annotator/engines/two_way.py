"""segment_anything's TwoWayTransformer, regrouped so the image side multiplies few columns.

Same arithmetic as `TwoWayTransformer.forward` up to float rounding (~1e-6), used by the
segment-everything generator (B point prompts on one shared image embedding, `automatic.py`) and
by the exported ONNX decoder (B = 1, `onnx_decoder.py`; everything here traces with
`torch.onnx.export(..., dynamo=False)`).

Shapes: B prompt sets, T prompt tokens (5 output tokens + points + box corners / padding), N = h*w
image tokens (4096), C channels (256), H heads, d = D/H per-head width of an Attention whose
projections map C -> D (D = 128 in the cross attentions, downsample rate 2).

The products with the N image tokens are regrouped (reassociated, not approximated) to go through
the H*T prompt columns instead of the D-wide projections of all N tokens:

- Tokens attending to the image (`tokens_to_image`, q = prompt tokens, k = v = image): the head-h
  scores q_h . (W_k,h x + b_k,h) / sqrt(d) are (W_k,h^T q_h / sqrt(d)) . x + q_h . b_k,h / sqrt(d);
  the second term is constant along the softmax row, so the key bias cancels. Since a softmax row
  sums to 1, sum_n p_n (W_v,h x_n + b_v,h) = W_v,h (sum_n p_n x_n) + b_v,h: the value projection
  and its bias act on the H*T pooled rows, not on the N image tokens.
- The image attending to the tokens (`image_to_tokens`, q = image, k = v = prompt tokens): the
  scores (W_q,h x + b_q,h) . k_h are x . (W_q,h^T k_h) + b_q,h . k_h (the bias term varies per
  key, so it stays); and the output projection W_o (sum_t p_t v_t) + b_o is
  sum_t p_t (W_o,h v_t) + b_o, so W_o is applied to the H*T values before mixing.

Per prompt this is about half the multiply-adds of stock for T < 16 and makes no BxNxD
intermediates. Measured in the ONNX decoder (vit_b, 2 cores, graph v2): 1 point 13 ms instead of
22, 10 points 16 instead of 22, break-even near 20 points, 40 points 30 ms instead of 24. With B prompts sharing one 1xNxC image, the image's first products are one GEMM
for the whole batch (`_times_shared`), and `keys + key_pe` is computed once per block.

torch and segment_anything are imported inside the functions: this module imports without them.
"""

from __future__ import annotations


def is_regroupable(transformer) -> bool:
    """True for segment_anything's own TwoWayTransformer with stock, biased Attention modules
    (what the regrouping assumes); anything else must run as itself."""
    from segment_anything.modeling.transformer import Attention, TwoWayTransformer

    if type(transformer) is not TwoWayTransformer:
        return False
    attentions = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        attentions += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    return all(type(a) is Attention and a.q_proj.bias is not None for a in attentions)


def two_way_transformer(transformer, image_embedding, image_pe, point_embedding):
    """`transformer(image, image_pe, point_embedding)` for one image shared by B prompt sets.

    image_embedding: 1xCxhxw; image_pe: 1xCxhxw; point_embedding: BxTxC. Returns (queries BxTxC,
    keys BxNxC), N = h*w, as stock returns them for the image repeated B times. Transformers that
    are not stock (`is_regroupable`) or an image batch other than 1 run the module itself.
    """
    if image_embedding.shape[0] != 1 or not is_regroupable(transformer):
        return transformer(image_embedding, image_pe, point_embedding)
    keys = image_embedding.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    return regrouped_forward(transformer, keys, key_pe, point_embedding)


def regrouped_forward(transformer, keys, key_pe, point_embedding):
    """TwoWayTransformer.forward in token layout, with the regrouped cross attentions.

    keys: 1xNxC or BxNxC image tokens (row-major h*w); key_pe: 1xNxC their positional encoding
    (a per-model constant: the ONNX export precomputes it); point_embedding: BxTxC. Returns
    (queries BxTxC, keys BxNxC; 1xNxC only if there are no layers). `transformer` must be
    `is_regroupable`.
    """
    queries = query_pe = point_embedding
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        keys_with_pe = keys + key_pe  # unchanged until the block's last step: computed once
        attn_out = tokens_to_image(
            layer.cross_attn_token_to_image, queries + query_pe, keys_with_pe, keys
        )
        queries = layer.norm2(queries + attn_out)
        queries = layer.norm3(queries + layer.mlp(queries))
        attn_out = image_to_tokens(
            layer.cross_attn_image_to_token, keys_with_pe, queries + query_pe, queries
        )
        keys = layer.norm4(keys + attn_out)
    attn_out = tokens_to_image(
        transformer.final_attn_token_to_image, queries + query_pe, keys + key_pe, keys
    )
    return transformer.norm_final_attn(queries + attn_out), keys


def tokens_to_image(attention, queries, keys, values):
    """`attention(q=queries, k=keys, v=values)`, regrouped: T prompt tokens attend to N image
    tokens.

    queries: BxTxC; keys, values: 1xNxC (shared by the batch) or BxNxC. Returns BxTxC.
    """
    import math

    import torch

    heads = attention.num_heads
    q = attention.q_proj(queries)
    batch, tokens, inner = q.shape
    head_dim = inner // heads
    q = q.view(batch, tokens, heads, head_dim).transpose(1, 2)  # B x H x T x d
    k_weight, _ = _per_head(attention.k_proj, heads)  # the key bias cancels in the softmax
    q_in_c = (q @ k_weight) / math.sqrt(head_dim)  # B x H x T x C
    scores = _times_shared(q_in_c.reshape(batch, heads * tokens, -1), keys.transpose(1, 2))
    probs = torch.softmax(scores, dim=-1)  # B x HT x N
    pooled = _times_shared(probs, values).view(batch, heads, tokens, -1)  # B x H x T x C
    v_weight, v_bias = _per_head(attention.v_proj, heads)
    out = pooled @ v_weight.transpose(1, 2) + v_bias[None, :, None, :]  # B x H x T x d
    return attention.out_proj(out.transpose(1, 2).reshape(batch, tokens, inner))


def image_to_tokens(attention, image, tokens_k, tokens_v):
    """`attention(q=image, k=tokens_k, v=tokens_v)`, regrouped: N image tokens attend to T prompt
    tokens.

    image: 1xNxC (shared by the batch) or BxNxC; tokens_k, tokens_v: BxTxC. Returns BxNxC.
    """
    import math

    import torch

    heads = attention.num_heads
    k = attention.k_proj(tokens_k)
    v = attention.v_proj(tokens_v)
    batch, tokens, inner = k.shape
    head_dim = inner // heads
    k = k.view(batch, tokens, heads, head_dim).transpose(1, 2)  # B x H x T x d
    v = v.view(batch, tokens, heads, head_dim).transpose(1, 2)
    q_weight, q_bias = _per_head(attention.q_proj, heads)  # H x d x C, H x d
    k_in_c = (k @ q_weight) / math.sqrt(head_dim)  # B x H x T x C
    k_bias = (k @ q_bias[None, :, :, None]).view(batch, 1, heads * tokens) / math.sqrt(head_dim)
    k_in_c = k_in_c.reshape(batch, heads * tokens, -1)
    if image.shape[0] == 1 and batch > 1:  # one GEMM for the whole batch
        scores = (image[0] @ k_in_c.reshape(batch * heads * tokens, -1).T).view(
            -1, batch, heads * tokens
        )
        scores = scores.transpose(0, 1)  # B x N x HT
    else:
        scores = image @ k_in_c.transpose(1, 2)  # B x N x HT
    scores = scores + k_bias
    n = scores.shape[1]
    probs = torch.softmax(scores.view(batch, n, heads, tokens), dim=-1).view(batch, n, -1)
    out_weight = attention.out_proj.weight  # C x D
    out_per_head = out_weight.view(out_weight.shape[0], heads, head_dim).permute(1, 2, 0)
    v_out = (v @ out_per_head).reshape(batch, heads * tokens, -1)  # B x HT x C
    return probs @ v_out + attention.out_proj.bias


def _per_head(linear, heads: int):
    """A Linear(C -> D)'s weight as H x (D/H) x C and bias as H x (D/H)."""
    out_dim, in_dim = linear.weight.shape
    return (
        linear.weight.view(heads, out_dim // heads, in_dim),
        linear.bias.view(heads, out_dim // heads),
    )


def _times_shared(batched, shared):
    """batched (B x M x K) @ shared (1 x K x L or B x K x L) -> B x M x L, one GEMM when shared."""
    if shared.shape[0] == 1 and batched.shape[0] > 1:
        b, m, k = batched.shape
        return (batched.reshape(b * m, k) @ shared[0]).view(b, m, -1)
    return batched @ shared
