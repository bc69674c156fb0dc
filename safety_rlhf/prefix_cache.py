"""Frozen-prefix caching: run the frozen bottom layers once per rollout, only the LoRA-adapted top layers after.

When LoRA adapts only the top K of L decoder layers (`trainable_layers=K`, PEFT `layers_to_transform`), layers
0 .. L-K-1 compute the same function for the policy, for the reference (adapter off) and in every PPO epoch. So
their output over prompt + response, the hidden state (B, T, d) = `output_hidden_states[L-K]`, is computed once,
and the policy log-probs, the reference log-probs and each epoch's forward and backward run the top K layers only.

    split = DecoderSplit(policy, trainable_layers=K)
    hidden = split.bottom(input_ids, attention_mask, position_ids)  # (B, T, d), under torch.no_grad()
    logits = split.top(hidden, attention_mask, position_ids, logits_to_keep=R + 1)  # (B, R + 1, V)
    with policy.disable_adapter():
        ref_logits = split.top(hidden, attention_mask, position_ids, logits_to_keep=R + 1)

How it is exact, and why no model class is patched or copied:
    1. `DecoderSplit` holds references to the model's own embedding, decoder layers, final norm, rotary embedding
       and LM head (no parameter copies; the model's layer list is untouched), and repeats the decoder's loop of
       transformers 5.x (`LlamaModel.forward`, `MistralModel.forward`, `Qwen2Model.forward`) over a slice of layers.
    2. Masks come from the library's own `create_causal_mask` / `create_sliding_window_causal_mask`, and each layer
       gets the mask of its own attention kind, looked up by its absolute index (Qwen2's `layer_types[i]`): calling
       the decoder's forward on a copy whose `layers` is a slice would index `layer_types` from 0 and give a top
       layer the mask of a bottom one. Rotary embeddings come from the model's `rotary_emb` and position_ids.
    3. Masks and rotary embeddings are built from a tensor in the embedding's dtype, as the full forward builds them
       from `inputs_embeds`, so their dtype does not depend on the dtype the bottom layers return.
    4. Layers are called as the decoder calls them, so gradient checkpointing (`GradientCheckpointingLayer`),
       LoRA layers, `disable_adapter()` and 4-bit bitsandbytes layers behave as in the full forward.
    5. Only the families in `SUPPORTED_MODEL_TYPES` are accepted: their decoder forwards were read and are mirrored
       here, and the tests cover them. Another family is added after the same reading and a test, not assumed
       (a decoder may do work outside its layers, or choose masks by another rule).
"""

from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_utils import slice_logits_to_keep

from . import SafetyRLHFError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
MASK_FUNCTIONS = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}


def attention_kinds(config) -> list[str]:
    """The attention kind of each decoder layer, as each family's decoder forward chooses its mask."""
    n = config.num_hidden_layers
    if config.model_type == "qwen2":
        return list(config.layer_types[:n])
    if config.model_type == "mistral" and config.sliding_window is not None:
        return ["sliding_attention"] * n
    return ["full_attention"] * n


def causal_lm_of(model):
    """The transformers causal LM inside a `PeftModel` (LoRA layers injected in place), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class DecoderSplit:
    """A decoder-only causal LM seen as `bottom` (embedding + layers 0 .. L-K-1) and `top` (layers L-K .. L-1,
    final norm, LM head).

    A plain object, not an `nn.Module`: it only borrows the model's modules, so the parameters stay registered once
    (in the model) for optimizers, DDP and `state_dict`.

    Args:
        model: a Llama, Mistral or Qwen2 causal LM, or a `PeftModel` around one (4-bit bitsandbytes included).
        trainable_layers (`int`): = K, the number of top layers `top` runs; 1 <= K <= L.
    """

    def __init__(self, model, trainable_layers: int):
        lm = causal_lm_of(model)
        config = getattr(lm, "config", None)
        model_type = getattr(config, "model_type", type(lm).__name__)
        decoder = getattr(lm, "model", None)
        parts = ("embed_tokens", "layers", "norm", "rotary_emb")
        if (
            model_type not in SUPPORTED_MODEL_TYPES
            or not hasattr(lm, "lm_head")
            or not all(hasattr(decoder, p) for p in parts)
        ):
            raise SafetyRLHFError(
                f"frozen-prefix caching does not support {type(lm).__name__} (model_type {model_type!r}); it supports "
                f"the causal LMs of {', '.join(SUPPORTED_MODEL_TYPES)}: unset trainable_layers for this model"
            )
        n_layers = config.num_hidden_layers
        check_trainable_layers(trainable_layers, n_layers)
        self.config = config
        self.embed_tokens, self.norm, self.rotary_emb, self.lm_head = (
            decoder.embed_tokens,
            decoder.norm,
            decoder.rotary_emb,
            lm.lm_head,
        )
        self.boundary = n_layers - trainable_layers  # = L - K: index of the first top layer
        self.layers = list(decoder.layers[:n_layers])
        self.kinds = attention_kinds(config)
        self._check_frozen_bottom()

    def _check_frozen_bottom(self):
        """The cache is exact only if the bottom is the same function with the adapter on and off, at every step."""
        bottom = [("embed_tokens", self.embed_tokens)] + [
            (f"layers.{i}", self.layers[i]) for i in range(self.boundary)
        ]
        for prefix, module in bottom:
            for name, param in module.named_parameters():
                if param.requires_grad or "lora_" in name:
                    raise SafetyRLHFError(
                        f"{prefix}.{name} is below the top {len(self.layers) - self.boundary} layers but is trained or "
                        "a LoRA weight, so the bottom layers cannot be cached; load the policy with the same "
                        "trainable_layers (LoRA layers_to_transform on the top layers only)"
                    )

    def bottom(self, input_ids, attention_mask, position_ids):
        """Hidden state (B, T, d) entering layer L-K, before any norm: `output_hidden_states[L-K]` of the model.

        Call it under `torch.no_grad()`: nothing below the LoRA layers is trained.
        """
        hidden = self.embed_tokens(input_ids)
        return self.run_layers(hidden, range(self.boundary), attention_mask, position_ids)

    def top(self, hidden, attention_mask, position_ids, logits_to_keep: int = 0):
        """Logits (B, T', V) of the model from the hidden state `bottom` returned; T' = `logits_to_keep` last
        positions (0 keeps all), as the model's own `logits_to_keep`."""
        hidden = self.run_layers(hidden, range(self.boundary, len(self.layers)), attention_mask, position_ids)
        hidden = slice_logits_to_keep(self.norm(hidden), logits_to_keep)
        return self.lm_head(hidden)

    def response_logits(self, hidden, attention_mask, position_ids, response_length: int):
        """`rollout.response_logits` from the cached hidden state: logits (B, R, V) predicting the last R tokens."""
        logits = self.top(hidden, attention_mask, position_ids, logits_to_keep=response_length + 1)
        return logits[:, -response_length - 1 : -1]

    def run_layers(self, hidden, indices: range, attention_mask, position_ids, layers=None):
        """Layers `indices` on `hidden` (B, T, d), with the masks and rotary embeddings the full forward gives them.

        `layers` maps an index to the module run there (`critics.PrefixCritic`'s copies); default: the model's own.
        """
        layers = self.layers if layers is None else layers
        # An empty (B, T, 0) tensor in the embedding's dtype stands for the model's `inputs_embeds`: the mask functions
        # and the rotary embedding read only its batch size, length, dtype and device.
        like = hidden.new_empty((*hidden.shape[:2], 0), dtype=self.embed_tokens.weight.dtype)
        masks = {
            kind: MASK_FUNCTIONS[kind](
                config=self.config,
                inputs_embeds=like,
                attention_mask=attention_mask,
                cache=None,
                position_ids=position_ids,
            )
            for kind in {self.kinds[i] for i in indices}
        }
        position_embeddings = self.rotary_emb(like, position_ids=position_ids)
        for i in indices:
            hidden = layers[i](
                hidden,
                attention_mask=masks[self.kinds[i]],
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                cache=None,
                use_cache=False,
            )
        return hidden


def check_trainable_layers(trainable_layers: int, n_layers: int) -> None:
    """One-line error for a `trainable_layers` outside 1..L."""
    if not 1 <= trainable_layers <= n_layers:
        raise SafetyRLHFError(
            f"trainable_layers={trainable_layers} is outside 1..{n_layers} (the policy has {n_layers} decoder "
            "layers); choose a value in that range, or unset it to adapt every layer"
        )
