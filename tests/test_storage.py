"""cluster.storage (orchestrator/storage.py) on a folder and on an S3 emulator; packed shards read
from an object-store URI; what a cluster of several nodes refuses; failure reasons that name the
exception; tags as strings for MLflow's REST store."""
import os
import time

import pytest
import torch

from orchestrator import tracking
from orchestrator.errors import short_error
from orchestrator.experiment import ConfigError
from orchestrator.storage import Storage
from workloads.data import open_source
from workloads.data.shards import PackedShards, pack_split
from workloads.data.stream import ShardStream

from test_stream import VIEWS
from two_node import BUCKET, s3_server


@pytest.fixture(scope="module")
def s3(monkeypatch_module, tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3")) as env:
        for k, v in env.items():
            monkeypatch_module.setenv(k, v)
        yield f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def roundtrip(store: Storage, tmp_path):
    src = tmp_path / "w.pt"
    torch.save({"w": torch.arange(4)}, src)
    assert not store.exists("backbones/a/backbone.pt")
    with pytest.raises(FileNotFoundError, match="backbones/a/backbone.pt: not in the storage"):
        store.fetch("backbones/a/backbone.pt", tmp_path / "cache")
    store.put(src, "backbones/a/method.pt")
    store.put(src, "backbones/a/backbone.pt")
    assert store.exists("backbones/a/backbone.pt")
    assert store.list("backbones") == ["backbones/a/backbone.pt", "backbones/a/method.pt"]
    got = store.fetch("backbones/a/backbone.pt", tmp_path / "cache")
    assert torch.equal(torch.load(got, weights_only=True)["w"], torch.arange(4))
    return src, got


def test_a_folder_storage_hands_over_the_stored_file_itself(tmp_path):
    store = Storage(tmp_path / "store")
    _, got = roundtrip(store, tmp_path)
    assert got == tmp_path / "store" / "backbones" / "a" / "backbone.pt"  # no copy on a filesystem
    assert store.ray_train("ray/x") == {"storage_path": str(tmp_path / "store" / "ray" / "x")}
    store.delete("backbones")
    assert store.list("backbones") == [] and not store.exists("backbones/a/backbone.pt")
    store.delete("backbones")  # nothing there is fine


def test_an_object_store_is_read_through_each_nodes_cache(s3, tmp_path):
    store = Storage(f"{s3}/store")
    src, got = roundtrip(store, tmp_path)
    assert got.is_relative_to(tmp_path / "cache" / "storage")  # a download into this node's cache
    assert store.fetch("backbones/a/backbone.pt", tmp_path / "cache") == got  # downloaded once
    args = store.ray_train("ray/x")
    assert args["storage_path"] == f"{BUCKET}/store/ray/x" and args["storage_filesystem"] is store.fs
    assert store.uri("backbones/a/backbone.pt") == f"{s3}/store/backbones/a/backbone.pt"
    # a rerun rewrites the file: the next reader gets the new contents, not the cached copy
    time.sleep(1.1)
    torch.save({"w": torch.zeros(2)}, src)
    store.put(src, "backbones/a/backbone.pt")
    again = store.fetch("backbones/a/backbone.pt", tmp_path / "cache")
    assert again != got and torch.equal(torch.load(again, weights_only=True)["w"], torch.zeros(2))
    store.delete("backbones/a")
    assert store.list("backbones") == []


def test_a_storage_that_cannot_be_written_is_refused_up_front(s3, tmp_path):
    Storage(f"{s3}/store").check_writable()
    assert Storage(f"{s3}/store").list("") == []  # the probe is gone
    with pytest.raises(ConfigError, match=r"cluster.storage: cannot write to s3://no-such-bucket/x: .*bucket"):
        Storage("s3://no-such-bucket/x").check_writable()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="cluster.storage: cannot write to .*a_file/store"):
        Storage(tmp_path / "a_file" / "store").check_writable()


def test_packed_shards_stream_from_an_object_store_as_from_a_folder(s3, tmp_path):
    import pyarrow.fs as pafs
    pack_split(open_source("dtd-kit", split="val", image_size=32), tmp_path / "packed", shard_size=60, max_side=40)
    fs, root = pafs.FileSystem.from_uri(f"{s3}/data")
    pafs.copy_files(str(tmp_path / "packed"), f"{root}/packed", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    local, remote = PackedShards(tmp_path / "packed", "val"), PackedShards(f"{s3}/data/packed", "val")
    assert len(remote) == len(local) == 240 and remote.identity() == local.identity()
    assert remote.jpeg(123) == local.jpeg(123)
    assert (remote.column("label") == local.column("label")).all()

    def first_epoch(shards):
        return list(ShardStream(shards, views=VIEWS, size=32, seed=0, rank=0, world=1, batch_per_rank=48).epoch(0))
    a, b = first_epoch(local), first_epoch(remote)
    assert len(a) == len(b) == 5 and all(torch.equal(x.index, y.index) and torch.equal(x.view1, y.view1)
                                         for x, y in zip(a, b))
    # the registry opens it by URI as the `packed` dataset; a wrong split names what is there
    assert len(open_source("packed", split="val", image_size=32, root=f"{s3}/data/packed")) == 240
    with pytest.raises(Exception, match=r"no packed split 'train' at s3://.*packed splits there: val"):
        PackedShards(f"{s3}/data/packed", "train")


def nodes(monkeypatch, n: int):
    import ray
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}] * n + [{"Alive": False}])


def test_one_node_needs_no_shared_storage(monkeypatch, tmp_path):
    from orchestrator.ray_exec import check_shared_storage
    nodes(monkeypatch, 1)
    check_shared_storage(None, f"sqlite:///{tmp_path}/mlflow.db", tmp_path)


def test_several_nodes_refuse_a_local_storage_or_store(monkeypatch, tmp_path):
    from orchestrator.ray_exec import check_shared_storage
    nodes(monkeypatch, 2)
    sqlite = f"sqlite:///{tmp_path}/runs/mlflow.db"
    with pytest.raises(ConfigError, match=r"cluster.storage: this Ray cluster has 2 alive nodes.*s3://bucket/prefix"):
        check_shared_storage(None, "http://head:5000", tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"tracking.uri: this Ray cluster has 2 alive nodes.*sassl ui"):
        check_shared_storage("s3://b/p", sqlite, tmp_path / "runs")
    with pytest.raises(ConfigError, match="tracking.uri"):  # the store is not in the shared folder
        check_shared_storage(str(tmp_path / "shared"), sqlite, tmp_path / "runs")
    check_shared_storage("s3://b/p", "http://head:5000", tmp_path / "runs")
    check_shared_storage(str(tmp_path), sqlite, tmp_path / "runs")  # all of it in the shared folder


def test_a_failed_worker_group_is_reported_by_its_rank_0_exception():
    from ray.train import WorkerGroupError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    tb = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
          "FileNotFoundError: [Errno 2] No such file or directory: '/runs/stylizers/ab/stylizer.pt'")
    rank0 = UserExceptionWithTraceback(FileNotFoundError(2, "No such file or directory", "/runs/stylizers/ab/stylizer.pt"), tb)
    rank1 = UserExceptionWithTraceback(RuntimeError("collective aborted"), "Traceback ...\nRuntimeError: collective aborted")
    err = WorkerGroupError("[Rank 0 Error Snippet]:\n" + tb, {1: rank1, 0: rank0})
    assert short_error(err) == "FileNotFoundError: [Errno 2] No such file or directory: '/runs/stylizers/ab/stylizer.pt'"
    assert short_error(RuntimeError("stylizer 1 failed")) == "RuntimeError: stylizer 1 failed"
    wrapped = RuntimeError("cell failed")
    wrapped.__cause__ = ValueError("bad\nthing")
    assert short_error(wrapped) == "ValueError: bad thing"


def test_tags_go_to_mlflow_as_strings():
    class Client:
        def create_run(self, experiment_id, run_name, tags):
            self.tags = tags
            return "run"
    c = Client()
    assert tracking.create_run(c, "1", "cell", {tracking.TAG_SEED: 3, tracking.TAG_ROW: "x"}) == "run"
    assert c.tags == {tracking.TAG_SEED: "3", tracking.TAG_ROW: "x"}


def test_machine_params_are_logged_once_and_a_different_machine_is_kept_beside(tmp_path):
    """A run continued on another node keeps its first machine params; the other node's
    differing value is added under `.resumed` instead of failing MLflow's write-once check."""
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from workloads.machine import machine_params
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = tracking.create_run(c, c.create_experiment("m"), "cell", tags={})
    first = machine_params("machine.train")
    assert first["machine.train.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    tracking.log_params_once(c, run.info.run_id, first)
    tracking.log_params_once(c, run.info.run_id, first)  # same machine again: nothing to add
    other = {**first, "machine.train.cpu_capability": "another-kernel-set"}
    tracking.log_params_once(c, run.info.run_id, other)
    params = c.get_run(run.info.run_id).data.params
    assert params["machine.train.cpu_capability"] == first["machine.train.cpu_capability"]
    assert params["machine.train.cpu_capability.resumed"] == "another-kernel-set"
    assert "machine.train.torch.resumed" not in params
