"""DualVGR: dual-visual graph reasoning over appearance and motion clip graphs (Wang et al., TMM 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from configs.schema import ModelConfig
from models.fusion import MFB, ClipAttentionPool, OpenEndedHead, SourceAttentionFusion
from models.graph_attention import GraphAttentionStack, NodeRelevance
from models.question_encoder import EncodedQuestion, QueryWordAttention, QuestionEncoder
from models.registry import ModelSizes, register_model, text_arguments
from models.types import Batch, ModelOutput
from models.visual_units import AppearanceEncoder, MotionEncoder

# Keys of ModelOutput.aux; each holds every graph layer's output stacked: [G, B, C, D],
# G = unit_layers * graph_layers. The auxiliary losses (models.losses) read them.
GRAPH_KEYS = ("appearance_specific", "appearance_common", "motion_specific", "motion_common")


@dataclass
class UnitOutput:
    appearance: torch.Tensor  # [B, C, D] updated appearance stream
    motion: torch.Tensor  # [B, C, D] updated motion stream
    graphs: dict[str, list[torch.Tensor]]  # GRAPH_KEYS -> one [B, C, D] per graph layer


class DualVGRUnit(nn.Module):
    """One reasoning iteration: query attention, node punishment, four graphs, fusion, residual."""

    def __init__(
        self, word_dim: int, module_dim: int, *, graph_layers: int, heads: int, gat_dropout: float, leaky_slope: float
    ) -> None:
        super().__init__()
        self.query_attention = QueryWordAttention(module_dim)
        self.appearance_relevance = NodeRelevance(word_dim, module_dim)
        self.motion_relevance = NodeRelevance(word_dim, module_dim)

        def graph() -> GraphAttentionStack:
            return GraphAttentionStack(module_dim, heads, graph_layers, dropout=gat_dropout, leaky_slope=leaky_slope)

        self.graphs = nn.ModuleDict({key: graph() for key in GRAPH_KEYS})
        self.appearance_fusion = SourceAttentionFusion(module_dim, module_dim)
        self.motion_fusion = SourceAttentionFusion(module_dim, module_dim)

    def forward(self, appearance: torch.Tensor, motion: torch.Tensor, question: EncodedQuestion) -> UnitOutput:
        """appearance, motion [B, C, D] -> both streams updated, plus every graph layer's output."""
        query = self.query_attention(question)  # [B, W]
        appearance_relevance = self.appearance_relevance(query, appearance)  # [B, C, 1]
        motion_relevance = self.motion_relevance(query, motion)  # [B, C, 1]
        graphs = {
            "appearance_specific": self.graphs["appearance_specific"](appearance, appearance_relevance),
            "appearance_common": self.graphs["appearance_common"](appearance, appearance_relevance),
            "motion_specific": self.graphs["motion_specific"](motion, motion_relevance),
            "motion_common": self.graphs["motion_common"](motion, motion_relevance),
        }
        appearance_update = self.appearance_fusion(
            [graphs["appearance_common"][-1], graphs["appearance_specific"][-1]]
        )  # [B, C, D]
        motion_update = self.motion_fusion([graphs["motion_common"][-1], graphs["motion_specific"][-1]])  # [B, C, D]
        return UnitOutput(appearance + appearance_update, motion + motion_update, graphs)


class DualVGR(nn.Module):
    """DualVGR for open-ended VideoQA on pre-extracted (or backbone-computed) clip features."""

    uses_video: ClassVar[bool] = True

    def __init__(
        self,
        *,
        question_vocab_size: int,
        answer_vocab_size: int,
        appearance_dim: int,
        motion_dim: int,
        module_dim: int = 768,
        word_dim: int = 300,
        unit_layers: int = 2,
        graph_layers: int = 1,
        gat_heads: int = 4,
        dropout: float = 0.15,
        gat_dropout: float = 0.15,
        leaky_slope: float = 0.01,
        mfb_factor: int = 2,
        glove: torch.Tensor | None = None,
        freeze_embeddings: bool = False,
        clip_positions: int = 0,
    ) -> None:
        super().__init__()
        # The clip graph is fully connected and the pooling is attention, so DualVGR itself cannot tell
        # which clip came first. An optional learned embedding per clip position (not in the paper) lets
        # it answer temporal-order questions; 0 keeps the published model.
        self.clip_position = nn.Parameter(0.02 * torch.randn(2, clip_positions, module_dim)) if clip_positions else None
        self.question_encoder = QuestionEncoder(
            question_vocab_size, word_dim, module_dim, dropout=dropout, glove=glove, freeze_embeddings=freeze_embeddings
        )
        self.appearance_encoder = AppearanceEncoder(appearance_dim, module_dim, dropout=dropout)
        self.motion_encoder = MotionEncoder(motion_dim, module_dim)
        self.units = nn.ModuleList(
            DualVGRUnit(
                word_dim,
                module_dim,
                graph_layers=graph_layers,
                heads=gat_heads,
                gat_dropout=gat_dropout,
                leaky_slope=leaky_slope,
            )
            for _ in range(unit_layers)
        )
        self.stream_fusion = MFB((module_dim, module_dim), module_dim, factor=mfb_factor)
        self.clip_pool = ClipAttentionPool(module_dim, dropout=dropout)
        self.answer_head = OpenEndedHead(module_dim, module_dim, answer_vocab_size, dropout=dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        if batch.appearance is None or batch.motion is None:
            raise ValueError("DualVGR needs batch.appearance [B, C, F, Da] and batch.motion [B, C, Dm]")
        return self.forward_features(batch.question, batch.question_len, batch.appearance, batch.motion)

    def forward_features(
        self,
        question: torch.Tensor,
        question_len: torch.Tensor,
        appearance: torch.Tensor,
        motion: torch.Tensor,
    ) -> ModelOutput:
        """The model on raw tensors, so a trainable backbone can feed it appearance/motion features.

        question [B, L], question_len [B], appearance [B, C, F, Da], motion [B, C, Dm].
        """
        encoded = self.question_encoder(question, question_len)
        appearance_clips = self.appearance_encoder(appearance)  # [B, C, D]
        motion_clips = self.motion_encoder(motion)  # [B, C, D]
        if self.clip_position is not None:
            clips_now = appearance_clips.shape[1]
            appearance_clips = appearance_clips + self.clip_position[0, :clips_now]  # [B, C, D]
            motion_clips = motion_clips + self.clip_position[1, :clips_now]  # [B, C, D]
        graph_outputs: dict[str, list[torch.Tensor]] = {key: [] for key in GRAPH_KEYS}
        for unit in self.units:
            step = unit(appearance_clips, motion_clips, encoded)
            appearance_clips, motion_clips = step.appearance, step.motion  # [B, C, D] each
            for key, outputs in step.graphs.items():
                graph_outputs[key].extend(outputs)
        clips = self.stream_fusion(appearance_clips, motion_clips)  # [B, C, D]
        video = self.clip_pool(clips)  # [B, D]
        logits = self.answer_head(encoded.sentence, video)  # [B, A]
        aux = {key: torch.stack(outputs) for key, outputs in graph_outputs.items()}  # each [G, B, C, D]
        return ModelOutput(logits=logits, clip_features=clips, aux=aux)


@register_model("dualvgr", reads="features", model_class=DualVGR,
                description="DualVGR: question-conditioned graph attention over cached appearance and motion features")
def build_dualvgr(cfg: ModelConfig, sizes: ModelSizes) -> DualVGR:
    return DualVGR(
        **text_arguments(cfg, sizes),
        appearance_dim=sizes.appearance_dim,
        motion_dim=sizes.motion_dim,
        unit_layers=cfg.unit_layers,
        graph_layers=cfg.graph_layers,
        gat_heads=cfg.gat_heads,
        gat_dropout=cfg.gat_dropout,
        leaky_slope=cfg.leaky_slope,
        mfb_factor=cfg.mfb_factor,
        clip_positions=sizes.num_clips if cfg.clip_positions else 0,
    )
