import torch

from amlit.eval.metrics import EmbeddingCollector


def test_collector_orders_by_index_and_marks_missing_rows():
    collector = EmbeddingCollector(num_items=5)
    collector.update(torch.tensor([[3.0, 3.0], [0.0, 0.0]]), torch.tensor([3, 0]))
    collector.update(torch.tensor([[1.0, 1.0], [3.0, 3.0]]), torch.tensor([1, 3]))  # 3 again: sampler padding
    out = collector.compute()
    torch.testing.assert_close(out[[0, 1, 3]], torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]]))
    assert torch.isnan(out[[2, 4]]).all()
    collector.reset()
    assert collector.compute().shape == (5, 0)
