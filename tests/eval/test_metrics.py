import pytest
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


def _collect_on_rank(rank: int, world: int, port: int, shards: list, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    collector = EmbeddingCollector(num_items=7)
    for indices in shards[rank]:  # rank 1 may get no batch at all
        index = torch.tensor(indices)
        collector.update(torch.stack([index.double(), -index.double()], dim=1), index)
    results[rank] = collector.compute()
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize(
    "shards",
    [
        [[[0, 2], [4, 6]], [[1, 3], [5, 0]]],  # DistributedSampler-style: 7 images padded to 8, image 0 twice
        [[[0, 1, 2], [3, 4, 5], [6]], []],  # uneven: the second process saw no batch
    ],
)
def test_collector_gathers_over_two_processes(shards):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_collect_on_rank, args=(2, port, shards, results), nprocs=2)
    expected = torch.tensor([[float(i), -float(i)] for i in range(7)])  # every image, by index
    for rank in range(2):
        torch.testing.assert_close(results[rank], expected)
