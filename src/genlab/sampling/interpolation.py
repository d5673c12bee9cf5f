"""Interpolation in latent space: straight lines and the graph-based paths of Klushyn et al.
2019 ("Learning hierarchical priors in VAEs", arXiv 1905.04982, Sec. 4).

The graph path: nodes are codes (e.g. the posterior means of the training data), each joined
to its ``k`` nearest neighbours with the Euclidean distance as edge weight; the path between
two codes is the shortest path through the graph (Dijkstra, scipy), so it stays where the
codes are (where the aggregate posterior has mass) instead of crossing empty regions. With a
prior that matches the aggregate posterior, such regions are also where the prior has mass.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def linear_path(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """``steps`` codes evenly spaced on the segment from ``a`` to ``b`` (both ``(d,)``): ``(steps, d)``."""
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device).unsqueeze(1)
    return (1 - t) * a + t * b


def graph_path(nodes: Tensor, a: Tensor, b: Tensor, *, k: int = 10) -> Tensor:
    """The shortest path from ``a`` to ``b`` through the ``k``-nearest-neighbour graph of ``nodes``
    ``(N, d)`` (``a`` and ``b`` are added as nodes): ``(L, d)`` codes, ``a`` first, ``b`` last."""
    from scipy.sparse.csgraph import dijkstra
    from sklearn.neighbors import kneighbors_graph

    if k < 1 or k >= len(nodes):
        raise ValueError(f"graph_path: k must be in 1..{len(nodes) - 1}, got {k}")
    pts = torch.cat([a.reshape(1, -1), b.reshape(1, -1), nodes]).detach().cpu().double().numpy()
    graph = kneighbors_graph(pts, k, mode="distance")
    graph = graph.maximum(graph.T)  # undirected
    dist, pred = dijkstra(graph, directed=False, indices=0, return_predecessors=True)
    if not np.isfinite(dist[1]):
        raise ValueError(f"graph_path: the endpoints are not connected in the {k}-NN graph; raise k")
    order = [1]
    while order[-1] != 0:
        order.append(int(pred[order[-1]]))
    return torch.as_tensor(pts[order[::-1]], dtype=a.dtype, device=a.device)


def resample_path(path: Tensor, steps: int) -> Tensor:
    """``steps`` codes evenly spaced by arc length along the polyline ``path`` ``(L, d)``."""
    seg = (path[1:] - path[:-1]).norm(dim=1)
    cum = torch.cat([torch.zeros(1, dtype=path.dtype, device=path.device), seg.cumsum(0)])
    if float(cum[-1]) == 0.0:
        return path[:1].expand(steps, -1).clone()
    targets = torch.linspace(0, float(cum[-1]), steps, dtype=path.dtype, device=path.device)
    idx = torch.searchsorted(cum, targets, right=True).clamp(1, len(path) - 1)
    lo, hi = cum[idx - 1], cum[idx]
    w = ((targets - lo) / (hi - lo).clamp_min(1e-12)).unsqueeze(1)
    return (1 - w) * path[idx - 1] + w * path[idx]
