"""Question-punished multi-head graph attention over the fully connected graph of clip nodes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.onednn import Linear, linear


class NodeRelevance(nn.Module):
    """Question-conditioned punishment score in (0, 1) for each clip node of one stream."""

    def __init__(self, word_dim: int, module_dim: int) -> None:
        super().__init__()
        self.query = Linear(word_dim, module_dim)

    def forward(self, query_words: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """query_words [B, W], nodes [B, N, D] -> scores [B, N, 1]."""
        query = self.query(query_words)  # [B, D]
        return torch.sigmoid(torch.bmm(nodes, query.unsqueeze(2)))  # [B, N, 1]


class GraphAttention(nn.Module):
    """One multi-head GAT layer whose messages are scaled by each sender's relevance score.

    Heads are concatenated, so the output width equals the input width. The graph is fully
    connected with self loops (the reference's adjacency is all positive), so there is no mask.
    """

    def __init__(self, dim: int, heads: int, *, dropout: float, leaky_slope: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.weight = nn.Parameter(torch.empty(heads, dim, self.head_dim))
        self.bias = nn.Parameter(torch.zeros(heads, self.head_dim))
        # The attention vector a = [a_src; a_dst] of each head, split so we never build N*N pairs.
        self.attn_src = nn.Parameter(torch.empty(heads, self.head_dim))
        self.attn_dst = nn.Parameter(torch.empty(heads, self.head_dim))
        self.attn_bias = nn.Parameter(torch.zeros(heads))
        self.dropout = nn.Dropout(dropout)
        self.leaky_slope = leaky_slope
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform per head, zero biases: what the reference's per-head linear layers get."""
        for head_weight in self.weight:
            nn.init.xavier_uniform_(head_weight)
        attn_bound = math.sqrt(6.0 / (2 * self.head_dim + 1))
        nn.init.uniform_(self.attn_src, -attn_bound, attn_bound)
        nn.init.uniform_(self.attn_dst, -attn_bound, attn_bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.attn_bias)

    def forward(self, nodes: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        """nodes [B, N, D], relevance [B, N, 1] -> updated nodes [B, N, D]."""
        batch, num_nodes, dim = nodes.shape
        dropped = self.dropout(nodes)
        # All heads in one product: weight [H, D, E] as one [H*E, D] linear layer.
        stacked = self.weight.permute(0, 2, 1).reshape(self.heads * self.head_dim, dim)  # [H*E, D]
        values = linear(dropped, stacked).view(batch, num_nodes, self.heads, self.head_dim)  # [B, N, H, E]
        values = values.transpose(1, 2) + self.bias.unsqueeze(1)  # [B, H, N, E]
        src = (values * self.attn_src.unsqueeze(1)).sum(-1)  # [B, H, N]
        dst = (values * self.attn_dst.unsqueeze(1)).sum(-1)  # [B, H, N]
        logits = src.unsqueeze(-1) + dst.unsqueeze(-2) + self.attn_bias.view(1, -1, 1, 1)  # [B, H, N, N]
        logits = F.leaky_relu(logits, self.leaky_slope)
        attention = self.dropout(torch.softmax(logits, dim=-1))  # [B, H, N, N]
        # Punishment: irrelevant clips send weaker messages; the attention weights stay as they are.
        messages = values * relevance.unsqueeze(1)  # [B, H, N, E]
        updated = F.elu(attention @ messages)  # [B, H, N, E]
        updated = updated.transpose(1, 2).reshape(batch, num_nodes, dim)  # [B, N, D]
        return self.dropout(updated)


class GraphAttentionStack(nn.Module):
    """`layers` GraphAttention layers applied in sequence with the same relevance scores."""

    def __init__(self, dim: int, heads: int, layers: int, *, dropout: float, leaky_slope: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            GraphAttention(dim, heads, dropout=dropout, leaky_slope=leaky_slope) for _ in range(layers)
        )

    def forward(self, nodes: torch.Tensor, relevance: torch.Tensor) -> list[torch.Tensor]:
        """nodes [B, N, D] -> the output of every layer, each [B, N, D]."""
        outputs = []
        for layer in self.layers:
            nodes = layer(nodes, relevance)  # [B, N, D]
            outputs.append(nodes)
        return outputs
