"""Training losses: answer cross-entropy and DualVGR's common-consistency and HSIC dependence losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.dualvgr import GRAPH_KEYS
from models.types import ModelOutput


def answer_loss(logits: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the answer vocabulary, averaged over the batch."""
    return F.cross_entropy(logits, answer)


def common_consistency_loss(common_a: torch.Tensor, common_b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two common graphs' node-similarity (cosine Gram) matrices.

    common_a, common_b [B, N, D]: nodes are centred over N and L2-normalised over D first.
    """
    centred_a = common_a - common_a.mean(dim=1, keepdim=True)  # [B, N, D]
    centred_b = common_b - common_b.mean(dim=1, keepdim=True)  # [B, N, D]
    unit_a = F.normalize(centred_a, p=2, dim=2)
    unit_b = F.normalize(centred_b, p=2, dim=2)
    gram_a = torch.bmm(unit_a, unit_a.transpose(1, 2))  # [B, N, N]
    gram_b = torch.bmm(unit_b, unit_b.transpose(1, 2))  # [B, N, N]
    return ((gram_a - gram_b) ** 2).mean()


def hsic_dependence_loss(specific: torch.Tensor, common: torch.Tensor) -> torch.Tensor:
    """Unnormalised HSIC trace(R K1 R K2) with linear kernels over the N nodes, summed over the batch.

    specific, common [B, N, D]; R = I - 1/N centres the kernels. As in the reference there is no
    1/(N-1)^2 factor and the batch is summed, not averaged.
    """
    num_nodes = specific.size(1)
    centring = torch.eye(num_nodes, dtype=specific.dtype, device=specific.device) - 1.0 / num_nodes  # [N, N]
    kernel_specific = torch.bmm(specific, specific.transpose(1, 2))  # [B, N, N]
    kernel_common = torch.bmm(common, common.transpose(1, 2))  # [B, N, N]
    centred_specific = centring @ kernel_specific  # [B, N, N]
    centred_common = centring @ kernel_common  # [B, N, N]
    # trace(X Y) = sum_ij X_ij Y_ji, without forming the product.
    return (centred_specific * centred_common.transpose(1, 2)).sum()


def auxiliary_losses(aux: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DualVGR's auxiliary losses, averaged over its G graph layers; {} for models without graphs.

    aux holds "appearance_specific", "appearance_common", "motion_specific", "motion_common",
    each [G, B, N, D]. Returns "consistency" (common appearance vs common motion) and "dependence"
    (HSIC of specific vs common, appearance plus motion).
    """
    if not all(key in aux for key in GRAPH_KEYS):
        return {}
    layers = aux["appearance_common"].size(0)

    def flat(key: str) -> torch.Tensor:
        return aux[key].flatten(0, 1)  # [G*B, N, D]

    # Every layer has the same size, so a mean over G*B equals the mean over layers of batch means.
    consistency = common_consistency_loss(flat("appearance_common"), flat("motion_common"))
    dependence = (
        hsic_dependence_loss(flat("appearance_specific"), flat("appearance_common"))
        + hsic_dependence_loss(flat("motion_specific"), flat("motion_common"))
    ) / layers
    return {"consistency": consistency, "dependence": dependence}


def qa_loss(
    output: ModelOutput, answer: torch.Tensor, *, alpha: float, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss = CE + alpha * consistency + beta * dependence, and its detached parts by name."""
    parts = {"answer": answer_loss(output.logits, answer), **auxiliary_losses(output.aux)}
    total = parts["answer"]
    if "consistency" in parts:
        total = total + alpha * parts["consistency"] + beta * parts["dependence"]
    return total, {name: value.detach() for name, value in parts.items()}
