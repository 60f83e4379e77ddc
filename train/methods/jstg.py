"""JSTG: Modelling Neighbor Relation in Joint Space-Time Graph (Zhao, Jin, Heng, ICCV 2021; spec §5).

CRW's walk with (i) a neighbour-relation graph: every node embedding is replaced by a weighted sum
over its 3x3 grid neighbourhood with 9 learnable weights shared by all nodes (Eq. 1), initialised
from the topological prior; (ii) the similarity graph on those aggregated embeddings (Eq. 2-3);
(iii) sub-cycle losses for every k (Eq. 6); (iv) attentive node dropout by pixel discrepancy δ
(Eq. 5) in the second training stage.

No public code exists; choices where the paper is silent (spec §5.8), all configurable:
* prior: a neighbour's weight ∝ the number of the three structures (1x3, 3x1, 3x3) it belongs to:
  centre 3, 4-neighbours 2, corners 1, over 15; the learnable logits start at log(prior) so that
  softmax(e) == prior at step 0 (`edge_init`: log_prior | prior | random | fixed);
* border nodes: softmax(e) renormalised over the neighbours that exist (no zero padding bias);
* Eq. 1 mixes the normalised 128-d embeddings φ(q) and f(q) is re-normalised before Eq. 2;
* walks k = 1..T-1 from frame 0 (a T-frame clip has T-1 steps), loss = sum over k (Eq. 6);
* δ = 1 - ||mean of the per-pixel unit embeddings||², computed without gradient; a node with
  δ < threshold is removed from its frame (no walk enters it, it is no start node); per node per
  frame; a clip where a frame keeps fewer than 2 nodes is trained without node dropout;
* backward steps use the transposed similarities (as CRW); no random edge dropout (p = 0);
* the edge weights are trained in both stages at the stage's learning rate.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .crw import CRW
from .base import MethodOutput


def topological_prior(kh: int = 3, kw: int = 3) -> torch.Tensor:
    """[kh, kw] weights summing to 1; the 3x3 structure-count prior, uniform for other shapes."""
    if (kh, kw) == (3, 3):
        counts = torch.tensor([[1.0, 2.0, 1.0], [2.0, 3.0, 2.0], [1.0, 2.0, 1.0]])
        return counts / counts.sum()
    return torch.full((kh, kw), 1.0 / (kh * kw))


class NeighbourAggregation(nn.Module):
    """Eq. 1 on a g x g node grid: f(q_i) = Σ_j w_j q_{i+j}, w = softmax(e) over existing neighbours."""

    def __init__(self, size=(3, 3), init: str = "log_prior"):
        super().__init__()
        kh, kw = size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError("neighbourhood sides must be odd")
        prior = topological_prior(kh, kw)
        if init == "log_prior":
            logits = prior.log()
        elif init in ("prior", "fixed"):
            logits = prior.clone()   # literal reading: raw prior values as logits (almost uniform)
        elif init == "random":
            logits = torch.randn(kh, kw) * 0.1
        else:
            raise ValueError(f"unknown edge_init {init!r}")
        self.edge_logits = nn.Parameter(logits, requires_grad=init != "fixed")

    def weights(self) -> torch.Tensor:
        return F.softmax(self.edge_logits.float().flatten(), 0).view_as(self.edge_logits)

    def forward(self, q: torch.Tensor, grid: int, renormalise: bool = True) -> torch.Tensor:
        """q [B, C, T, N] with N = grid**2 (row-major) -> aggregated [B, C, T, N], unit vectors."""
        b, c, t, n = q.shape
        if grid * grid != n:
            raise ValueError(f"{n} nodes are not a {grid}x{grid} grid")
        w = self.weights()
        kh, kw = w.shape
        x = q.float().permute(0, 2, 1, 3).reshape(b * t * c, 1, grid, grid)
        agg = F.conv2d(x, w[None, None], padding=(kh // 2, kw // 2))
        # Border renormalisation: divide by the weight mass of the neighbours that exist.
        mass = F.conv2d(torch.ones(1, 1, grid, grid, device=q.device), w[None, None], padding=(kh // 2, kw // 2))
        agg = agg / mass
        agg = agg.view(b, t, c, n).permute(0, 2, 1, 3)
        return F.normalize(agg, dim=1) if renormalise else agg


def pixel_discrepancy(maps: torch.Tensor, proj: nn.Module) -> torch.Tensor:
    """Eq. 5: δ = 1 - mean_ij(p_iᵀ p_j) over a node's unit pixel embeddings = 1 - ||mean p||².

    maps [M, C, h, w] trunk features of M nodes; `proj` is the node projection (a Linear) applied
    per cell.  Returns δ [M] in [0, 1], without gradient.
    """
    with torch.no_grad():
        x = maps.float().flatten(2).transpose(1, 2)             # [M, hw, C]
        p = F.normalize(proj(x).float(), dim=-1)              # a mask only: autocast precision is fine
        return (1.0 - p.mean(dim=1).pow(2).sum(-1)).clamp(0.0, 1.0)


def node_keep_mask(delta: torch.Tensor, threshold: float, min_kept: int = 2) -> torch.Tensor:
    """delta [B, T, N] -> keep [B, T, N]: δ >= threshold; clips with a frame under `min_kept` keep all."""
    keep = delta >= threshold
    ok = (keep.sum(-1) >= min_kept).all(-1)                    # [B]
    return torch.where(ok[:, None, None], keep, torch.ones_like(keep))


@register
class JSTG(CRW):
    name = "jstg"
    family = "walk"
    augmentation = "crw_patches"

    def __init__(self, config: dict):
        cfg = dict(config)
        lc = {"edge_dropout": 0.0, "walk_lengths": "all", "reduction": "sum", **cfg.get("loss", {})}
        cfg["loss"] = lc
        super().__init__(cfg)
        nb = lc.get("neighbourhood", [3, 3])
        self.aggregate = NeighbourAggregation(tuple(nb), lc.get("edge_init", "log_prior"))
        self.node_dropout_threshold = float(lc.get("node_dropout_threshold", 0.2))
        self.node_dropout = bool(lc.get("node_dropout", False))
        self.use_graph = bool(lc.get("neighbour_graph", True))

    def set_stage(self, stage: dict) -> None:
        if "node_dropout" in stage:
            self.node_dropout = bool(stage["node_dropout"])
        if "node_dropout_threshold" in stage:
            self.node_dropout_threshold = float(stage["node_dropout_threshold"])

    def forward(self, batch: dict) -> MethodOutput:
        clips = batch["clips"]
        b, t, n = clips.shape[:3]
        grid = int(math.isqrt(n))
        q, maps = self.node_embeddings(clips)
        with torch.autocast(clips.device.type, enabled=False):
            f = self.aggregate(q.float(), grid) if self.use_graph else q
        keep = None
        metrics = {}
        if self.node_dropout:
            proj = self.selfsim_fc[-1] if len(self.selfsim_fc) == 1 else self.selfsim_fc
            delta = pixel_discrepancy(maps, proj).view(b, t, n)
            keep = node_keep_mask(delta, self.node_dropout_threshold)
            metrics["node_keep_fraction"] = keep.float().mean()
        out = self.walk_loss(f, batch["seed"].tolist(), keep)
        out.metrics.update(metrics)
        w = self.aggregate.weights().detach()
        out.metrics["edge_weight_centre"] = w[w.shape[0] // 2, w.shape[1] // 2]
        return out
