"""The meta-model: a GPT-2 (built from a config, never downloaded) that reads weights, writes programs.

Sequence layout, as in the thesis: the weight chunks first (projected to the model width, given as
`inputs_embeds`), then the program positions, so that every program position sees all the weights.
Attention over the weights is `causal` (GPT-2's own: an early chunk never sees a later one) or
`prefix` (a prefix-LM, as Langosco et al.: the weight chunks see each other in both directions,
program positions stay causal), set by a 4-D attention mask. Two decoders share the layout:

- `slots` (the thesis): program positions are learned slot embeddings; slot i predicts token i.
- `autoregressive` (the thesis's future work): program positions are the program's own tokens,
  shifted, each with the sublayer it is written in (the targets group lines by the sublayer that
  computes them, `vocab`) and, where the next token is a table entry, the operand values it is the
  entry of (`vocab.Grammar.entry`: the offsets that `offsets` weight tokens give the units
  computing it); decoding feeds back each predicted token, constrained by
  `vocab.Grammar` to programs that parse (ops' arities and argument kinds, variables in scope, as
  many sublayers as the weights have).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers import GPT2Config, GPT2Model

from inverse_tracr.meta import vocab, weights
from inverse_tracr.meta.config import MetaConfig
from inverse_tracr.meta.data import ENTRY_VALUES, entry_rows, pad_features
from inverse_tracr.meta.presets import PRESETS
from inverse_tracr.programs import Program
from inverse_tracr.programs.program import DEFAULT_MAX_SEQ_LEN, DEFAULT_VOCAB

MAX_PROGRAM_TOKENS = vocab.MAX_PROGRAM_TOKENS
#: Sublayers a program position can tell apart (later ones share the last embedding).
SUBLAYERS = 2 * weights.MAX_LAYERS


def sublayers(ids: torch.Tensor) -> torch.Tensor:
    """[B, T]: the sublayer each position's next token is written in — the EOLs up to it."""
    return torch.cumsum(ids == vocab.EOL_ID, dim=1).clamp(max=SUBLAYERS - 1)


class MetaModel(nn.Module):
    def __init__(self, config: MetaConfig):
        super().__init__()
        self.config = config
        preset = PRESETS[config.preset]
        gpt = GPT2Config(
            vocab_size=1,  # programs are embedded here, not by GPT-2's token table
            bos_token_id=None,
            eos_token_id=None,
            n_positions=config.max_chunks + MAX_PROGRAM_TOKENS,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            # GPT-2's own GELU (tanh approximation), fused: the function `gelu_new` computes, in one op
            # instead of five; a step of `tiny` on 2 cores costs ~15 % less.
            activation_function="gelu_pytorch_tanh",
            **preset.gpt2(),
        )
        self.backbone = GPT2Model(gpt)
        # Fed only inputs_embeds, GPT-2's token table gets no gradient; frozen, DDP does not wait for one.
        self.backbone.wte.weight.requires_grad_(False)
        self.weights_in = nn.Linear(weights.width(config.weight_tokens), preset.n_embd)
        # Program positions embed their token (autoregressive) or their slot; only one table
        # exists, since DDP refuses parameters that get no gradient.
        rows = MAX_PROGRAM_TOKENS if config.decoder == "slots" else len(vocab.TOKENS)
        self.program_in = nn.Embedding(rows, preset.n_embd)
        # A program token also embeds the sublayer it is written in (the EOLs before it): the
        # targets group lines by sublayer and a weight token carries its layer and type, so
        # attention can match a line with the weights that compute it without counting.
        self.sublayer_in = nn.Embedding(SUBLAYERS, preset.n_embd) if config.decoder == "autoregressive" else None
        # And where the next token is a table entry, the values of the operands it is the entry
        # of: a table is a lookup from those values, which offset weight tokens name alike.
        entries = config.entries and config.decoder == "autoregressive"
        self.entry_in = nn.ModuleList(nn.Embedding(ENTRY_VALUES + 1, preset.n_embd) for _ in range(2)) if entries else None
        self.head = nn.Linear(preset.n_embd, len(vocab.TOKENS))
        self.program_vocab, self.program_max_seq_len = DEFAULT_VOCAB, DEFAULT_MAX_SEQ_LEN

    def forward(self, features, weight_mask, program_in, program_mask, entries=None):
        """Logits [B, T, V] for the program positions.

        features [B, N, FEATURES], weight_mask [B, N], program_in [B, T] ids (ignored by `slots`),
        program_mask [B, T], entries [B, T, 2] (`data.collate`'s; default: read from program_in
        with the vocabulary of the zoo the model was trained on).
        """
        w = self._embed_weights(features)
        if self.config.decoder == "slots":
            p = self.program_in(torch.arange(program_in.shape[1], device=w.device)).expand(len(w), -1, -1)
        else:
            if entries is None and self.entry_in is not None:
                entries = torch.stack([torch.from_numpy(entry_rows(vocab.entries(row, self.program_vocab, self.program_max_seq_len)))
                                       for row in program_in.tolist()]).to(w.device)
            p = self.embed_program(program_in, sublayers(program_in), entries)  # [B, T, D]
        positions = torch.cat([torch.arange(w.shape[1], device=w.device), self._program_positions(0, p.shape[1])])
        hidden = self.backbone(
            inputs_embeds=torch.cat([w, p], dim=1),
            attention_mask=self.attention_mask(torch.cat([weight_mask, program_mask], dim=1), w.shape[1]),
            position_ids=positions.expand(len(w), -1),
        ).last_hidden_state
        return self.head(hidden[:, w.shape[1] :])  # [B, T, V]

    def embed_program(self, ids: torch.Tensor, sublayer: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
        """Program tokens [B, T] written in sublayers [B, T], before entries [B, T, 2] → model width."""
        embedded = self.program_in(ids) + self.sublayer_in(sublayer)
        if self.entry_in is not None:
            embedded = embedded + self.entry_in[0](entries[..., 0]) + self.entry_in[1](entries[..., 1])
        return embedded

    def attention_mask(self, valid: torch.Tensor, n_weights: int) -> torch.Tensor:
        """GPT-2's attention mask for a sequence of `n_weights` chunks then program positions:
        `valid` [B, T] (padding: 0) as is for causal attention; for a prefix-LM, an additive
        [B, 1, T, T] mask where a query sees every valid chunk and the valid positions up to itself."""
        if self.config.attention == "causal":
            return valid.long()
        t = valid.shape[1]
        query, key = torch.arange(t, device=valid.device)[:, None], torch.arange(t, device=valid.device)[None, :]
        allowed = ((key < n_weights) | (key <= query))[None] & valid.bool()[:, None, :]  # [B, T, T]
        allowed |= torch.eye(t, dtype=torch.bool, device=valid.device)  # a padded position sees itself: no empty softmax row
        return torch.zeros(allowed.shape, device=valid.device).masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]

    def _embed_weights(self, features):
        """Weight chunks [B, N, FEATURES] → model width, with the training-time regularisers."""
        floats = weights.floats(self.config.weight_tokens)
        values = weights.normalise(features[..., :floats])  # [B, N, floats]
        if self.training and self.config.input_noise > 0:
            values = values + self.config.input_noise * values.std() * torch.randn_like(values)
        if self.training and self.config.input_dropout > 0:
            keep = torch.rand(values.shape[:2], device=values.device) >= self.config.input_dropout
            values = values * keep.unsqueeze(-1)
        return self.weights_in(torch.cat([values, features[..., floats:]], dim=-1))

    def _program_positions(self, start: int, length: int):
        """Program positions start at max_chunks whatever the number of chunks (and the batch's
        padding), so a program token has the same position in training and in decoding."""
        return self.config.max_chunks + torch.arange(start, start + length, device=self.head.weight.device)

    @torch.no_grad()
    def generate(
        self, params: Sequence[dict[str, np.ndarray]], constrained: bool = True, inputs: Sequence[tuple[tuple, int]] | None = None
    ) -> list[list[int]]:
        """Greedy decoding of several models' programs at once (BOS excluded, EOS included if reached).

        `inputs`: each model's (vocabulary, max_seq_len), which the grammar needs to know how long
        a table is (default: the zoo's the meta-model was trained on).

        The autoregressive decoder reads the weights once and then one position per token, reusing
        GPT-2's key/value cache (`Decoding`): the cost of a program grows with its length, not with
        its length times the number of weight chunks. `slots` needs a single pass.
        """
        b = len(params)
        inputs = inputs if inputs is not None else [(self.program_vocab, self.program_max_seq_len)] * b
        grammars = [vocab.Grammar(tuple(v), n, weights.sublayers(p)) for (v, n), p in zip(inputs, params)]
        state = Decoding(self, params)
        ids, finished = [[] for _ in range(b)], [False] * b
        for _ in range(MAX_PROGRAM_TOKENS - 1):
            logits = state.logits
            if constrained:
                logits = logits + allowed_mask(grammars, logits)
            chosen = logits.argmax(-1).tolist()
            for row, token in enumerate(chosen):
                if finished[row] or token == vocab.PAD_ID:  # PAD: the grammar allows nothing, a dead end
                    chosen[row], finished[row] = vocab.PAD_ID, True
                    continue
                ids[row].append(token)
                if constrained:
                    grammars[row].step(token)
                else:  # the grammar still says where entries sit, until a token it refuses
                    vocab.follow(grammars[row], token)
                finished[row] = token == vocab.EOS_ID
            if all(finished):
                break
            state.advance(torch.tensor(chosen, device=state.device), [g.entry() for g in grammars])
        return ids

    def decompile(
        self,
        params: dict[str, np.ndarray],
        vocab_: tuple | None = None,
        max_seq_len: int | None = None,
        output_values: Sequence | None = None,
        constrained: bool = True,
    ) -> Program:
        """The program these weights compute; ProgramError if the prediction does not parse.

        Programs are read with the vocabulary and length of the zoo the model was trained on
        (`train.load_model` sets them) unless given; `output_values` (a layout's) label the output.
        """
        vocab_ = tuple(vocab_) if vocab_ is not None else self.program_vocab
        max_seq_len = max_seq_len if max_seq_len is not None else self.program_max_seq_len
        ids = self.generate([params], constrained, [(vocab_, max_seq_len)])[0]
        return vocab.decode([vocab.BOS_ID, *ids], vocab_, max_seq_len, output_values)

    @torch.no_grad()
    def teacher_forced(self, batch: dict[str, torch.Tensor]) -> list[list[int]]:
        """Per program in a `data.collate` batch: the predicted token at each target position."""
        self.eval()
        logits = self(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"], batch["entries"])
        lengths = batch["program_mask"].sum(1).long().tolist()
        return [row[:n] for row, n in zip(logits.argmax(-1).tolist(), lengths)]


def allowed_mask(grammars: Sequence[vocab.Grammar], logits: torch.Tensor) -> torch.Tensor:
    """[B, V]: 0 where each row's grammar allows a token, −inf elsewhere."""
    mask = torch.full_like(logits, float("-inf"))
    for row, grammar in enumerate(grammars):
        mask[row, list(grammar.allowed())] = 0
    return mask


class Decoding:
    """Decoding state of several programs: `logits` for each row's next token, `advance` to feed
    one, `select` to keep (and repeat, reorder) rows, as beam search does.

    The autoregressive decoder reads the weights once, then one position per token through
    GPT-2's key/value cache; `slots` has all its logits from one pass (`select` and `advance`
    only move along them)."""

    @torch.no_grad()
    def __init__(self, model: "MetaModel", params: Sequence[dict[str, np.ndarray]]):
        model.eval()
        self.model, self.device, self.step = model, model.head.weight.device, 0
        features, weight_mask = pad_features([weights.features(p, model.config.weight_tokens)[: model.config.max_chunks] for p in params])
        features, weight_mask = features.to(self.device), weight_mask.to(self.device)
        b = len(features)
        bos = torch.full((b, 1), vocab.BOS_ID, dtype=torch.long, device=self.device)
        if model.config.decoder == "slots":  # slot i's logits are those of token i+1
            blank = torch.zeros(b, MAX_PROGRAM_TOKENS - 1, dtype=torch.long, device=self.device)
            self._slots = model(features, weight_mask, blank, torch.ones_like(blank))
            self.logits = self._slots[:, 0]
            return
        w = model._embed_weights(features)
        self.mask = torch.cat([weight_mask, torch.ones(b, 1, device=self.device)], dim=1)
        # Rows of one model's weights (a search's) pad nothing: later tokens then need no mask at
        # all, and building one from a padding mask of ones took a third of each step.
        self._padded = not bool(weight_mask.all())
        positions = torch.cat([torch.arange(w.shape[1], device=self.device), model._program_positions(0, 1)])
        self.cache = None
        # The first pass holds the weights: the model's own mask (a prefix-LM's is 4-D); every
        # later token attends to all that came before, which the plain padding mask says.
        self.sublayer = torch.zeros(b, 1, dtype=torch.long, device=self.device)
        self._run(torch.cat([w, model.embed_program(bos, self.sublayer, self._entries([None] * b))], dim=1), positions,
                  model.attention_mask(self.mask, w.shape[1]))

    def _run(self, embeds: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        mask = (self.mask.long() if self._padded else None) if mask is None else mask
        out = self.model.backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions.expand(len(embeds), -1),
                                  past_key_values=self.cache, use_cache=True)
        self.logits, self.cache = self.model.head(out.last_hidden_state[:, -1]), out.past_key_values

    def _entries(self, entries: Sequence[tuple[int, int | None] | None]) -> torch.Tensor:
        return torch.from_numpy(entry_rows(entries))[:, None].to(self.device)  # [B, 1, 2]

    @torch.no_grad()
    def advance(self, tokens: torch.Tensor, entries: Sequence[tuple[int, int | None] | None] | None = None) -> None:
        """Feed each row's next token [B], and where the token after it sits in its table
        (`vocab.Grammar.entry` of each row's grammar once it has read the token; default: nowhere)."""
        self.step += 1
        if self.model.config.decoder == "slots":
            self.logits = self._slots[:, min(self.step, self._slots.shape[1] - 1)]
            return
        self.mask = torch.cat([self.mask, torch.ones(len(tokens), 1, device=self.device)], dim=1)
        self.sublayer = (self.sublayer + (tokens[:, None] == vocab.EOL_ID)).clamp(max=SUBLAYERS - 1)
        entries = self._entries(entries if entries is not None else [None] * len(tokens))
        self._run(self.model.embed_program(tokens[:, None], self.sublayer, entries), self.model._program_positions(self.step, 1))

    def select(self, rows: torch.Tensor) -> None:
        """Keep rows `rows` (indices, repeats allowed) in that order."""
        self.logits = self.logits[rows]
        if self.model.config.decoder == "slots":
            self._slots = self._slots[rows]
        else:
            self.mask, self.sublayer = self.mask[rows], self.sublayer[rows]
            self.cache.reorder_cache(rows)
