"""AU graph (MTAC eq 6), row normalisation and the dense GCN (MTAC eq 7), by hand."""
import torch

from ufer.models.au_graph import (
    AUGraphHead,
    GCNLayer,
    au_cooccurrence_graph,
    ones_graph,
    random_graph,
    row_normalize,
)

# 4 samples x 3 AUs, intensities binarised at 0.5: AU0 present in rows 0-2, AU1 in rows 0
# and 2, AU2 never present.
AU = torch.tensor(
    [
        [0.9, 0.7, 0.1],
        [0.6, 0.2, 0.0],
        [1.0, 0.5, 0.4],
        [0.3, 0.0, 0.2],
    ]
)


def test_cooccurrence_graph_mtac():
    graph = au_cooccurrence_graph(AU)
    # A[0,1] = P(AU0 | AU1) = 2/2 = 1;  A[1,0] = P(AU1 | AU0) = 2/3: asymmetric
    # diagonal 1 for present AUs; AU2 never present -> column 2 all zero, A[2,2] = 0 too
    expected = torch.tensor([[1.0, 1.0, 0.0], [2 / 3, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(graph, expected)
    assert graph[0, 1] != graph[1, 0]


def test_cooccurrence_graph_masked_mtac():
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[2, 1] = False  # AU1 of row 2 unknown: pairs with AU1 count rows 0, 1, 3 only
    graph = au_cooccurrence_graph(AU, mask)
    # A[0,1] = P(AU0 | AU1): AU1 present (known) in row 0 only, AU0 present there -> 1/1
    # A[1,0] = P(AU1 | AU0) over rows with AU1 known: AU0 present in rows 0, 1; AU1 in row 0 -> 1/2
    # A[0,0] = 3/3 (all rows know AU0), A[1,1] = 1/1
    expected = torch.tensor([[1.0, 1.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(graph, expected)


def test_row_normalize_mtac():
    graph = torch.tensor([[1.0, 1.0, 0.0], [2 / 3, 1.0, 0.0], [0.0, 0.0, 0.0]])
    # rows sum to 2, 5/3, 0 -> [0.5, 0.5, 0], [0.4, 0.6, 0], zero row stays zero
    a_bar = row_normalize(graph)
    expected = torch.tensor([[0.5, 0.5, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(a_bar, expected)
    assert torch.allclose(a_bar.sum(1), torch.tensor([1.0, 1.0, 0.0]))


def test_ablation_graphs_mtac():
    g = random_graph(4, torch.Generator().manual_seed(0))
    assert g.shape == (4, 4) and g.min() >= 0 and g.max() < 1
    assert torch.equal(g, random_graph(4, torch.Generator().manual_seed(0)))
    assert torch.equal(ones_graph(3), torch.ones(3, 3))


def test_gcn_layer_mtac():
    layer = GCNLayer(2, 2, negative_slope=0.01)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    a_bar = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    x = torch.tensor([[[3.0, -2.0], [-1.0, 0.0]]])  # (B=1, M=2, F=2)
    # X W = [[3, -4], [-1, 0]]; A_bar X W = [[0.5*3 - 0.5*1, 0.5*-4], [-1, 0]] = [[1, -2], [-1, 0]]
    # LeakyReLU(0.01): [[1, -0.02], [-0.01, 0]]
    expected = torch.tensor([[[1.0, -0.02], [-0.01, 0.0]]])
    assert torch.allclose(layer(x, a_bar), expected)


def test_au_graph_head_mtac():
    torch.manual_seed(0)
    head = AUGraphHead(5, au_cooccurrence_graph(AU), node_dim=8, layers=2)
    assert "adjacency" in head.state_dict()
    assert all(p is not head.adjacency for p in head.parameters())
    assert torch.allclose(head.adjacency.sum(1), torch.tensor([1.0, 1.0, 0.0]))
    s = head(torch.randn(4, 5))
    assert s.shape == (4, 3)
    s.sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
