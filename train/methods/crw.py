"""CRW: Space-Time Correspondence as a Contrastive Random Walk (Jabri et al. 2020; spec §3).

Nodes are the patches of each frame (augment `crw_patches`); each patch goes through the engine
trunk, is average-pooled, projected by `selfsim_fc` and L2-normalised.  Transitions between
consecutive frames are softmax(similarity / τ); the loss is the cross-entropy of palindrome walks
t0 -> t_k -> t0 with the identity.

Quirks of the official code reproduced by default (`loss` config, spec §3.2 / §11a):
* walk lengths k = 2..T-1 from frame 0 only; the one-step cycle is off (`walk_lengths: "crw"`;
  `"all"` adds k = 1, the paper's version);
* loss = mean over walk lengths, not the paper's sum (`reduction: "mean"`);
* edge dropout writes -1e20 into the shared similarity tensor in place, so backward steps inherit
  the forward drops (`inherit_drops: true`; effective backward rate 1-(1-p)^2);
* τ = 0.05 (README), not the paper's 0.07.
Not reproduced: CIFAR normalisation at train time (we use the spec's ImageNet statistics, §1.2
Follow), and train/test BN differences are the engine's (eval mode at test, §11a-20).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError

from . import register
from .base import Method, MethodOutput
from .walk import (cycle_losses, edge_drop_masks, palindrome_walks, reduce_losses, transitions, walk_lengths,
                   walk_metrics)


def make_head(cin: int, dim: int, depth: int) -> nn.Sequential:
    """CRW `make_head`: depth 0 = one Linear(cin, dim); depth d adds d Linear(cin, cin)+ReLU before it."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(cin, cin), nn.ReLU()]
    layers.append(nn.Linear(cin, dim))
    return nn.Sequential(*layers)


@register
class CRW(Method):
    name = "crw"
    family = "walk"
    augmentation = "crw_patches"

    def __init__(self, config: dict):
        super().__init__(config)
        lc = config.get("loss", {})
        self.temperature = float(lc.get("temperature", 0.05))
        self.edge_dropout = float(lc.get("edge_dropout", 0.1))
        self.inherit_drops = bool(lc.get("inherit_drops", True))
        self.walk_rule = str(lc.get("walk_lengths", "crw"))
        self.reduction = str(lc.get("reduction", "mean"))
        self.window_radius = float(lc.get("window_radius", 0) or 0)   # dense nodes only; 0 = global
        self.trunk, cf = self.build_training_trunk(config.get("train_layer"))
        self.selfsim_fc = make_head(cf, int(lc.get("embed_dim", 128)), int(lc.get("head_depth", 0)))

    def identity_head(self) -> None:
        last = self.selfsim_fc[-1]
        if len(self.selfsim_fc) != 1 or last.in_features != last.out_features:
            raise ConfigError(None, "an identity head needs head_depth 0 and embed_dim equal to the trunk's channels")
        with torch.no_grad():
            last.weight.copy_(torch.eye(last.in_features))
            last.bias.zero_()

    # -- nodes ---------------------------------------------------------------------------------
    def patch_maps(self, clips: torch.Tensor) -> torch.Tensor:
        """[B, T, N, 3, p, p] -> trunk maps [B*T*N, C, h, w] (one batched trunk call)."""
        b, t, n = clips.shape[:3]
        return self.trunk(clips.reshape(b * t * n, *clips.shape[3:]))

    def nodes_from_maps(self, maps: torch.Tensor, b: int, t: int, n: int) -> torch.Tensor:
        """Pool, project, normalise: node embeddings q [B, D, T, N] in float32."""
        pooled = maps.mean(dim=(2, 3))
        q = F.normalize(self.selfsim_fc(pooled).float(), dim=-1)
        return q.view(b, t, n, -1).permute(0, 3, 1, 2)

    def node_embeddings(self, clips: torch.Tensor):
        if clips.dim() == 5:
            return self.dense_nodes(clips)
        b, t, n = clips.shape[:3]
        maps = self.patch_maps(clips)
        return self.nodes_from_maps(maps, b, t, n), maps

    def dense_nodes(self, clips: torch.Tensor):
        """Whole frames [B, T, 3, H, W]: every cell of the trunk's map is a node (the nodes the engine
        propagates between); used to adapt a model to one video.  q [B, D, T, h*w]."""
        b, t = clips.shape[:2]
        maps = self.trunk(clips.flatten(0, 1))
        cells = maps.flatten(2).transpose(1, 2)                       # [B*T, h*w, C]
        q = F.normalize(self.selfsim_fc(cells).float(), dim=-1)
        return q.view(b, t, cells.shape[1], -1).permute(0, 3, 1, 2), maps

    # -- loss ------------------------------------------------------------------------------------
    def walk_loss(self, q: torch.Tensor, seeds, keep=None, outside=None) -> MethodOutput:
        """`outside` [N, N] bool: edges no step may take (a local search window, as at inference)."""
        t, n = q.shape[2], q.shape[3]
        ks = walk_lengths(t, self.walk_rule)
        drops = edge_drop_masks(seeds, t - 1, n, self.edge_dropout if self.training else 0.0, q.device)
        if outside is not None:
            win = outside.to(q.device).expand(q.shape[0], t - 1, 2, n, n)
            drops = win if drops is None else drops | win
        with torch.autocast(q.device.type, enabled=False):   # walk arithmetic in fp32 (quirk §11a-18)
            fwd, bwd = transitions(q.float(), self.temperature, drops, self.inherit_drops, keep)
            per_k = cycle_losses(palindrome_walks(fwd, bwd, ks), None if keep is None else keep[:, 0])
        return MethodOutput(reduce_losses(per_k, self.reduction), walk_metrics(per_k))

    def forward(self, batch: dict) -> MethodOutput:
        q, maps = self.node_embeddings(batch["clips"])
        outside = None
        if batch["clips"].dim() == 5 and self.window_radius > 0:
            outside = outside_window(maps.shape[-2], maps.shape[-1], self.window_radius)
        return self.walk_loss(q, batch["seed"].tolist(), outside=outside)


def outside_window(h: int, w: int, radius: float) -> torch.Tensor:
    """Bool [h*w, h*w]: True where two cells of an h x w grid are farther apart than `radius`."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1).float()
    return torch.cdist(pos, pos) > radius
