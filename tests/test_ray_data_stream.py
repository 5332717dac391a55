"""The streamed path decoded by Ray Data tasks (orchestrator/ray_data_stream.py, data.stream_decode:
ray_data) on a real Ray cluster: the same images and the same crops as the thread path, an
epoch's order fixed by (seed, epoch, rank), damaged rows skipped and counted."""
import pytest
import ray
import torch

from orchestrator.ray_data_stream import RayDataShardStream
from workloads.data.stream import ShardStream

from test_stream import VIEWS, indices, pack_with_a_damaged_row, packed  # noqa: F401  (packed: a fixture)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of this test process (2 CPUs: the decode tasks need free ones). Not the
    shared test cluster: a driver joining that one needs Ray's token mode set before ray is
    first imported (orchestrator/ray_auth.py), and this process imported it long ago."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def streams(shards, **kw):
    args = {**dict(views=VIEWS, size=32, seed=0, rank=0, world=1, batch_per_rank=48), **kw}
    return ShardStream(shards, **args), RayDataShardStream(shards, **args)


def by_index(batches) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return {int(i): (b.view1[k], b.view2[k], b.crop1[k]) for b in batches for k, i in enumerate(b.index.tolist())}


def test_ray_data_decodes_the_same_views_as_the_threads_in_a_seeded_order(packed, ray_cluster):  # noqa: F811
    threads, ray_data = streams(packed)
    e0, e1 = list(ray_data.epoch(0)), list(ray_data.epoch(1))
    assert len(e0) == len(e1) == ray_data.plan(0).steps == 5 and all(b.shape == (48, 3, 32, 32) for b in e0)
    # every image once per epoch, in another order each epoch
    assert sorted(indices(e0)) == sorted(indices(e1)) == list(range(240)) and indices(e0) != indices(e1)
    # each image's two crops are the thread path's pixels and boxes exactly (only the order differs)
    mine, theirs = by_index(e0), by_index(list(threads.epoch(0)))
    assert mine.keys() == theirs.keys()
    for i in mine:
        assert all(torch.equal(a, b) for a, b in zip(mine[i], theirs[i])), i
    # a restarted worker (a new stream object) reads the epoch exactly as before
    again = list(RayDataShardStream(packed, views=VIEWS, size=32, seed=0, rank=0, world=1, batch_per_rank=48).epoch(1))
    assert indices(again) == indices(e1)
    assert all(torch.equal(a.view2, b.view2) for a, b in zip(again, e1))
    # another seed, another order
    other = RayDataShardStream(packed, views=VIEWS, size=32, seed=1, rank=0, world=1, batch_per_rank=48)
    assert indices(list(other.epoch(1))) != indices(e1)


def test_ray_data_skips_and_counts_a_damaged_row(tmp_path, ray_cluster):
    # 12 good rows of 13 fill the epoch's 3 steps in one pass, so the damaged row is met exactly once
    _, s = streams(pack_with_a_damaged_row(tmp_path, good=12), batch_per_rank=4)
    batches = list(s.epoch(0))
    assert len(batches) == 3 and s.skipped == 1 and 5 not in indices(batches)
    assert all(b.shape[0] == 4 for b in batches)


def test_the_worker_wraps_its_stream_as_data_stream_decode_says(packed):  # noqa: F811
    from dataclasses import replace

    from orchestrator.train_worker import ray_data_decoder
    from specs import cell_spec
    from workloads.cell import decoded
    from workloads.data.device_decode import DeviceDecodeStream
    threads, _ = streams(packed)
    cpu = torch.device("cpu")
    data = cell_spec().data
    assert decoded(threads, replace(data, stream_decode="worker"), cpu) is threads
    by_ray_data = replace(data, stream_decode="ray_data", stream_decode_cpus=0.5)
    by_ray = decoded(threads, by_ray_data, cpu, ray_data_decoder(replace(cell_spec(), data=by_ray_data)))
    assert type(by_ray) is RayDataShardStream and by_ray.decode_cpus == 0.5 and by_ray.plan(3) == threads.plan(3)
    with pytest.raises(ValueError, match="ray_data needs the orchestrator"):
        decoded(threads, by_ray_data, cpu)
    on_device = decoded(threads, replace(data, stream_decode="device"), cpu)
    assert type(on_device) is DeviceDecodeStream and on_device.device == cpu and on_device.batch == threads.batch
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    assert decoded(images, replace(data, stream_decode="device"), cpu) is images  # in memory: nothing to decode
