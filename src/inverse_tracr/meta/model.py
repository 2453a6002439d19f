"""The meta-model: a GPT-2 (built from a config, never downloaded) that reads weights, writes programs.

Sequence layout, as in the thesis: the weight chunks first (projected to the model width, given as
`inputs_embeds`), then the program positions, so that under causal attention every program
position sees all the weights. Two decoders share the layout:

- `slots` (the thesis): program positions are learned slot embeddings; slot i predicts token i.
- `autoregressive` (the thesis's future work): program positions are the program's own tokens,
  shifted; decoding feeds back each predicted token, constrained by `vocab.Grammar` to programs
  that parse (ops' arities and argument kinds, variables in scope).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch
from torch import nn
from transformers import GPT2Config, GPT2Model

from inverse_tracr.meta import vocab, weights
from inverse_tracr.programs import Program
from inverse_tracr.programs.program import DEFAULT_MAX_SEQ_LEN, DEFAULT_VOCAB

#: Named sizes: `tiny` for tests on a CPU … the thesis's GPT-2 medium/large for A100s.
PRESETS = {
    "tiny": dict(n_embd=64, n_layer=2, n_head=2),
    "small": dict(n_embd=256, n_layer=4, n_head=4),
    "base": dict(n_embd=768, n_layer=12, n_head=12),
    "medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "large": dict(n_embd=1280, n_layer=36, n_head=20),
}
MAX_PROGRAM_TOKENS = 2 + 5 * vocab.MAX_VARIABLES


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    preset: str = "tiny"
    decoder: Literal["autoregressive", "slots"] = "autoregressive"
    max_chunks: int = 512
    dropout: float = 0.0
    input_noise: float = 0.0  # Gaussian noise on (normalised) weights, × their std, in training
    input_dropout: float = 0.0  # chance of zeroing a weight chunk in training

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        if self.decoder not in ("autoregressive", "slots"):
            raise ValueError(f"unknown decoder {self.decoder!r}")


class MetaModel(nn.Module):
    def __init__(self, config: MetaConfig):
        super().__init__()
        self.config = config
        size = PRESETS[config.preset]
        gpt = GPT2Config(
            vocab_size=1,  # programs are embedded here, not by GPT-2's token table
            bos_token_id=None,
            eos_token_id=None,
            n_positions=config.max_chunks + MAX_PROGRAM_TOKENS,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            **size,
        )
        self.backbone = GPT2Model(gpt)
        # Fed only inputs_embeds, GPT-2's token table gets no gradient; frozen, DDP does not wait for one.
        self.backbone.wte.weight.requires_grad_(False)
        self.weights_in = nn.Linear(weights.FEATURES, size["n_embd"])
        # Program positions embed their token (autoregressive) or their slot; only one table
        # exists, since DDP refuses parameters that get no gradient.
        rows = MAX_PROGRAM_TOKENS if config.decoder == "slots" else len(vocab.TOKENS)
        self.program_in = nn.Embedding(rows, size["n_embd"])
        self.head = nn.Linear(size["n_embd"], len(vocab.TOKENS))
        self.program_vocab, self.program_max_seq_len = DEFAULT_VOCAB, DEFAULT_MAX_SEQ_LEN

    def forward(self, features, weight_mask, program_in, program_mask):
        """Logits [B, T, V] for the program positions.

        features [B, N, FEATURES], weight_mask [B, N], program_in [B, T] ids (ignored by `slots`),
        program_mask [B, T].
        """
        values = weights.normalise(features[..., : weights.CHUNK])  # [B, N, CHUNK]
        if self.training and self.config.input_noise > 0:
            values = values + self.config.input_noise * values.std() * torch.randn_like(values)
        if self.training and self.config.input_dropout > 0:
            keep = torch.rand(values.shape[:2], device=values.device) >= self.config.input_dropout
            values = values * keep.unsqueeze(-1)
        w = self.weights_in(torch.cat([values, features[..., weights.CHUNK :]], dim=-1))  # [B, N, D]
        if self.config.decoder == "slots":
            p = self.program_in(torch.arange(program_in.shape[1], device=w.device)).expand(len(w), -1, -1)
        else:
            p = self.program_in(program_in)  # [B, T, D]
        # Program positions start at max_chunks whatever the number of chunks (and the batch's
        # padding), so a program token has the same position in training and in decoding.
        n, t = w.shape[1], p.shape[1]
        positions = torch.cat([torch.arange(n), self.config.max_chunks + torch.arange(t)]).to(w.device)
        hidden = self.backbone(
            inputs_embeds=torch.cat([w, p], dim=1),
            attention_mask=torch.cat([weight_mask, program_mask], dim=1).long(),
            position_ids=positions.expand(len(w), -1),
        ).last_hidden_state
        return self.head(hidden[:, w.shape[1] :])  # [B, T, V]

    @torch.no_grad()
    def generate(self, params: dict[str, np.ndarray], constrained: bool = True) -> list[int]:
        """Greedy decoding of the program tokens (BOS excluded, EOS included if reached)."""
        self.eval()
        device = next(self.parameters()).device
        tokens = weights.tokenize(params)
        features = torch.from_numpy(tokens.features()[: self.config.max_chunks]).unsqueeze(0).to(device)
        weight_mask = torch.ones(features.shape[:2], device=device)
        grammar, ids = vocab.Grammar(), [vocab.BOS_ID]
        slot_logits = None
        while len(ids) < MAX_PROGRAM_TOKENS and ids[-1] != vocab.EOS_ID:
            if self.config.decoder == "slots":
                if slot_logits is None:  # one pass: slot i's logits are those of token i+1
                    blank = torch.zeros(1, MAX_PROGRAM_TOKENS - 1, dtype=torch.long, device=device)
                    slot_logits = self(features, weight_mask, blank, torch.ones_like(blank))[0]
                logits = slot_logits[len(ids) - 1]
            else:
                program = torch.tensor([ids], device=device)
                logits = self(features, weight_mask, program, torch.ones_like(program))[0, -1]
            if constrained:
                allowed = torch.full_like(logits, float("-inf"))
                allowed[list(grammar.allowed())] = 0
                logits = logits + allowed
            ids.append(int(logits.argmax()))
            if constrained:
                grammar.step(ids[-1])
        return ids[1:]

    def decompile(
        self, params: dict[str, np.ndarray], vocab_: tuple | None = None, max_seq_len: int | None = None, constrained: bool = True
    ) -> Program:
        """The program these weights compute; ProgramError if the prediction does not parse.

        Programs are read with the vocabulary and length of the zoo the model was trained on
        (`train.load_model` sets them) unless given.
        """
        vocab_ = vocab_ if vocab_ is not None else self.program_vocab
        max_seq_len = max_seq_len if max_seq_len is not None else self.program_max_seq_len
        return vocab.decode([vocab.BOS_ID, *self.generate(params, constrained)], vocab_, max_seq_len)

    @torch.no_grad()
    def teacher_forced(self, batch: dict[str, torch.Tensor]) -> list[list[int]]:
        """Per program in a `data.collate` batch: the predicted token at each target position."""
        self.eval()
        logits = self(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"])
        lengths = batch["program_mask"].sum(1).long().tolist()
        return [row[:n] for row, n in zip(logits.argmax(-1).tolist(), lengths)]
