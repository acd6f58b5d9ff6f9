"""The R-Block loss: mean cross-entropy of two sub-models plus alpha times a symmetric KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["rblock_loss", "rblock_loss_terms", "symmetric_kl"]


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean of KL(p_a || p_b) and KL(p_b || p_a), summed over classes, averaged over the batch.

    Args:
        logits_a: (B, K) logits of sub-model a.
        logits_b: (B, K) logits of sub-model b.

    Returns:
        A float32 scalar. Gradients flow into both inputs.
    """
    log_a = F.log_softmax(logits_a.float(), dim=-1)
    log_b = F.log_softmax(logits_b.float(), dim=-1)
    # 1/2 [sum p_a (log p_a - log p_b) + sum p_b (log p_b - log p_a)]
    #   = 1/2 sum (p_a - p_b)(log p_a - log p_b)
    per_sample = ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(dim=-1)
    return 0.5 * per_sample.mean()


def rblock_loss_terms(
    logits_a: torch.Tensor, logits_b: torch.Tensor, target: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The R-Block loss and its two parts.

    Returns:
        ``(loss, ce, kl)`` with ``ce = 1/2 [CE(z_a, y) + CE(z_b, y)]``,
        ``kl = 1/2 [KL(p_a||p_b) + KL(p_b||p_a)]`` and ``loss = ce + alpha * kl``.
    """
    ce = 0.5 * (F.cross_entropy(logits_a.float(), target) + F.cross_entropy(logits_b.float(), target))
    kl = symmetric_kl(logits_a, logits_b)
    return ce + alpha * kl, ce, kl


def rblock_loss(
    logits_a: torch.Tensor, logits_b: torch.Tensor, target: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Scalar R-Block loss (spec, "Loss").

    ``L = 1/2 [CE(z_a, y) + CE(z_b, y)] + alpha * 1/2 [KL(p_a || p_b) + KL(p_b || p_a)]``

    Args:
        logits_a: (B, K) logits of sub-model a (first half of the paired batch).
        logits_b: (B, K) logits of sub-model b (second half).
        target: (B,) int64 class labels.
        alpha: consistency weight, >= 0.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, but got {alpha=}")
    return rblock_loss_terms(logits_a, logits_b, target, alpha)[0]
