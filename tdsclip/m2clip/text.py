"""M2-CLIP's text branch: the frozen open_clip text transformer with one Text-Adapter before its last
layer's FFN, class-name prompts, and the cross-modal masked-language-modelling (CMLM) block.

Only the last layer holds a trainable adapter, so layers 0..L-2 run without autograd, and for the class
prompts (the same every step) their output is cached (per class-name list, device and dtype; cleared
when weights are loaded). The causal mask makes a token's features independent of the tokens after it,
so prompts are cut after the longest one's end-of-text token: the same features, a fraction of the 77
positions.
"""
from __future__ import annotations

import copy
import random

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import TextAdapter
from .towers import as_float, tokenizer


def _run_block(blk: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, adapter: nn.Module | None = None,
               kv: torch.Tensor | None = None) -> torch.Tensor:
    """open_clip block on batch-first tokens, with ``adapter`` before the FFN and, for the CMLM block,
    cross-attention to ``kv`` (queries and keys share ln_1, as in the authors' code)."""
    q = blk.ln_1(x)
    k = blk.ln_1(kv) if kv is not None else None
    x = x + blk.ls_1(blk.attention(q, k, k, attn_mask=mask))
    if adapter is not None:
        x = adapter(as_float(x, adapter)).to(x.dtype)
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


class TextEncoder(nn.Module):
    def __init__(self, clip: nn.Module, adapter_width: int, prompt: str):
        super().__init__()
        if not getattr(clip.transformer, "batch_first", True):
            raise ValueError("M2-CLIP needs an open_clip version whose text transformer is batch-first (>= 2.23)")
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.resblocks = clip.transformer.resblocks
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        width = int(clip.transformer.width)
        self.adapter = TextAdapter(width, adapter_width)
        # CMLM cross-attention block: a frozen copy of the last text layer, with its own Text-Adapter.
        self.cross_block = copy.deepcopy(self.resblocks[-1]).requires_grad_(False)
        self.cross_adapter = TextAdapter(width, adapter_width)
        self.prompt = prompt
        self.context_length = int(self.positional_embedding.shape[0])
        self._tokenizer = None
        self._cache: dict = {}
        self._register_load_state_dict_pre_hook(lambda *args, **kwargs: self._cache.clear())

    # ------------------------------------------------------------------ tokens
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = tokenizer()
        return self._tokenizer

    def _pack(self, token_lists: list[list[int]], device) -> torch.Tensor:
        sot, eot = self.tokenizer.sot_token_id, self.tokenizer.eot_token_id
        rows = [[sot] + t + [eot] for t in token_lists]
        length = max(len(r) for r in rows)
        if length > self.context_length:
            raise ValueError(f"a prompt is {length} tokens long, more than the text tower's context "
                             f"{self.context_length}: shorten the class names or model.prompt")
        out = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return out.to(device)

    def prompt_tokens(self, class_names: list[str], device) -> torch.Tensor:
        """(C, L) token ids of the prompts, L = the longest prompt (start/end tokens included)."""
        return self._pack([self.tokenizer.encode(self.prompt.format(n)) for n in class_names], device)

    def masked_tokens(self, class_names: list[str], labels: torch.Tensor, ratio: float,
                      generator: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        """CMLM inputs: for each video the prompt of its class with ``max(1, round(ratio * words))`` of the
        class name's words replaced, token by token, by the token of the word "mask" (CLIP's vocabulary has
        no mask token; the authors' code does the same). Returns (tokens (B, L), targets (B, L)): the
        original token ids at masked positions, -100 elsewhere."""
        mask_id = self.tokenizer.encode("mask")[0]
        prefix, _, suffix = self.prompt.partition("{}")
        rows, targets = [], []
        for label in labels.tolist():
            words = class_names[label].split()
            k = max(1, round(ratio * len(words))) if words else 0
            masked = set(generator.sample(range(len(words)), k))
            toks = list(self.tokenizer.encode(prefix)) if prefix.strip() else []
            tgt = [-100] * len(toks)
            for j, word in enumerate(words):
                ids = self.tokenizer.encode(word)
                toks += [mask_id] * len(ids) if j in masked else ids
                tgt += ids if j in masked else [-100] * len(ids)
            tail = self.tokenizer.encode(suffix) if suffix.strip() else []
            rows.append(toks + tail)
            targets.append(tgt + [-100] * len(tail))
        tokens = self._pack(rows, labels.device)
        target = torch.full_like(tokens, -100)
        for i, t in enumerate(targets):
            target[i, 1:1 + len(t)] = torch.tensor(t, device=labels.device)
        return tokens, target

    # ------------------------------------------------------------------ encoder
    @torch.no_grad()
    def frozen_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings through layers 0..L-2 (no trainable parameter there): (N, L, D)."""
        L = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:L]
        mask = self.attn_mask[:L, :L]
        for blk in self.resblocks[:-1]:
            x = _run_block(blk, x, mask)
        return x

    def last_layer(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        return _run_block(self.resblocks[-1], x, self.attn_mask[:L, :L], self.adapter)

    def pooled(self, tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ln_final at the end-of-text token (the highest id) → text_projection: (N, E)."""
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)])
        return x @ self.text_projection

    def class_features(self, class_names: list[str], device) -> torch.Tensor:
        """(C, E) prompt features of ``class_names`` (unnormalised), with autograd through the adapter."""
        dtype = self.token_embedding.weight.dtype
        key = (tuple(class_names), str(device), dtype, self.prompt)
        if key not in self._cache:
            tokens = self.prompt_tokens(class_names, device)
            self._cache = {key: (tokens, self.frozen_prefix(tokens))}  # one class list at a time
        tokens, prefix = self._cache[key]
        return self.pooled(tokens, self.last_layer(prefix))

    def cmlm_logits(self, tokens: torch.Tensor, frame_embeddings: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """Masked prompts (B, L) and per-frame video embeddings (B, T, E) → vocabulary logits (B, L, V)
        (paper Eq. 12: w* = z + CA(LN z, LN v); ŵ = A(w*); w_m = ŵ + MLP(LN ŵ))."""
        z = self.last_layer(self.frozen_prefix(tokens))
        w = _run_block(self.cross_block, z, None, self.cross_adapter, kv=frame_embeddings.to(z.dtype))
        return head(self.ln_final(w))


class MLMHead(nn.Module):
    """BERT's prediction head: Linear → GELU → LayerNorm → decoder tied to the frozen token embedding
    (so its size does not depend on a data set's class names) + a trainable output bias."""

    def __init__(self, token_embedding: nn.Embedding):
        super().__init__()
        width = token_embedding.weight.shape[1]
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(token_embedding.weight.shape[0]))
        self.token_embedding = [token_embedding]  # a reference, not a submodule (its weight is the text tower's)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.gelu(self.dense(as_float(x, self.dense))))
        return F.linear(h, self.token_embedding[0].weight.to(h.dtype), self.bias)
