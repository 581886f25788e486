"""Linguistic input unit: word embeddings, BiLSTM word features, the sentence embedding, word attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from models.onednn import Linear

# The reference drops slightly more of the final sentence vector (0.18) than of its inputs (0.15).
SENTENCE_DROPOUT = 0.18


@dataclass
class EncodedQuestion:
    """A question at three granularities plus the mask of its real (non-padding) words."""

    sentence: torch.Tensor  # [B, D] final BiLSTM states, both directions
    words: torch.Tensor  # [B, L, W] tanh of the (dropped-out) word embeddings
    contextual: torch.Tensor | None  # [B, L, D] BiLSTM output per word; zeros on padding
    mask: torch.Tensor  # [B, L] bool, True on real words


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, L] bool mask that is True on the first `lengths[b]` positions of each row."""
    positions = torch.arange(max_len, device=lengths.device)  # [L]
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # [B, L]


def _pack(sequence: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    # pack_padded_sequence insists on CPU lengths; packing is what makes padding invisible to the LSTM.
    return pack_padded_sequence(sequence, lengths.cpu(), batch_first=True, enforce_sorted=False)


class QuestionEncoder(nn.Module):
    """Embeds question tokens and encodes them with BiLSTMs, ignoring padding.

    As in the reference, the sentence embedding and the per-word features come from two separate
    BiLSTMs over the same words; `contextual_words=False` leaves the per-word one out (baselines).
    """

    def __init__(
        self,
        vocab_size: int,
        word_dim: int,
        module_dim: int,
        *,
        dropout: float,
        glove: torch.Tensor | None = None,
        freeze_embeddings: bool = False,
        contextual_words: bool = True,
    ) -> None:
        super().__init__()
        if module_dim % 2:
            raise ValueError(f"module_dim must be even for a BiLSTM, got {module_dim}")
        self.embedding = nn.Embedding(vocab_size, word_dim)
        with torch.no_grad():
            if glove is None:
                self.embedding.weight.uniform_(-1.0, 1.0)
            else:
                if tuple(glove.shape) != (vocab_size, word_dim):
                    raise ValueError(f"glove has shape {tuple(glove.shape)}, expected {(vocab_size, word_dim)}")
                self.embedding.weight.copy_(glove)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.embedding_dropout = nn.Dropout(dropout)
        self.sentence_lstm = nn.LSTM(word_dim, module_dim // 2, batch_first=True, bidirectional=True)
        self.sentence_dropout = nn.Dropout(SENTENCE_DROPOUT)
        self.word_lstm = (
            nn.LSTM(word_dim, module_dim // 2, batch_first=True, bidirectional=True) if contextual_words else None
        )

    def forward(self, question: torch.Tensor, question_len: torch.Tensor) -> EncodedQuestion:
        max_len = question.size(1)
        embedded = self.embedding(question)  # [B, L, W]
        words = torch.tanh(self.embedding_dropout(embedded))  # [B, L, W]
        packed = _pack(words, question_len)
        _, (final_states, _) = self.sentence_lstm(packed)  # final_states: [2, B, D/2]
        sentence = torch.cat([final_states[0], final_states[1]], dim=-1)  # [B, D]
        sentence = self.sentence_dropout(sentence)
        contextual = None
        if self.word_lstm is not None:
            packed_out, _ = self.word_lstm(packed)
            contextual, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=max_len)  # [B, L, D]
        return EncodedQuestion(sentence, words, contextual, length_mask(question_len, max_len))


class QueryWordAttention(nn.Module):
    """Attends over the words of a question to form one query vector per reasoning iteration.

    Scores come from the contextual (BiLSTM) word features; the pooled values are the word
    embeddings themselves, so the query lives in word space [B, W].
    """

    def __init__(self, module_dim: int) -> None:
        super().__init__()
        self.enhance = Linear(module_dim, module_dim)
        # No bias: a constant added to every word's score cancels in the softmax and could never learn.
        self.score = Linear(module_dim, 1, bias=False)

    def forward(self, question: EncodedQuestion) -> torch.Tensor:
        if question.contextual is None:
            raise ValueError("QueryWordAttention needs contextual word features (contextual_words=True)")
        enhanced = F.normalize(self.enhance(question.contextual), p=2, dim=-1)  # [B, L, D]
        scores = self.score(enhanced).squeeze(-1)  # [B, L]
        scores = scores.masked_fill(~question.mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # [B, L]
        return torch.bmm(weights.unsqueeze(1), question.words).squeeze(1)  # [B, W]
