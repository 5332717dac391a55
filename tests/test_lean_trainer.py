"""The Ray Train run every cell goes through starts only the actors it needs: no DatasetManager
when the run has no Ray Datasets, no preemption watcher on a one-node cluster (each is a Python
process importing Ray Train, seconds of CPU per cell; docs/measurements.md, "Test suite")."""
import os

import pytest
import ray
from ray.train import ScalingConfig
from ray.train.v2._internal.callbacks import DatasetsCallback

from orchestrator import ray_exec


def _names(trainer) -> list[str]:
    return [type(cb).__name__ for cb in trainer._create_default_callbacks()]


def test_the_datasets_callback_is_dropped_only_without_datasets():
    cls = ray_exec.lean_trainer_class()
    plain = _names(cls(lambda cfg: None, scaling_config=ScalingConfig(num_workers=1)))
    # a callable dataset is resolved only when the workers start, so none is built here
    with_data = _names(cls(lambda cfg: None, scaling_config=ScalingConfig(num_workers=1),
                           datasets={"train": lambda: None}))
    assert DatasetsCallback.__name__ not in plain
    assert DatasetsCallback.__name__ in with_data
    # nothing else is dropped: the placement-group cleaner, backend and metrics stay
    assert [n for n in with_data if n != DatasetsCallback.__name__] == plain
    assert {"BackendSetupCallback", "PlacementGroupCleanerCallback", "UserCallbackHandler"} <= set(plain)


@pytest.mark.parametrize("alive, user, expected", [
    ([True], None, "0"),                 # one node: off
    ([True, False], None, "0"),          # a dead node does not count
    ([True, True], None, None),          # two nodes: Ray Train's default (on)
    ([True], "1", "1"),                  # the user's own setting wins
])
def test_preemption_watcher_off_on_one_node(monkeypatch, alive, user, expected):
    monkeypatch.setenv(ray_exec.PREEMPTION_WATCHER_ENV, "recorded")  # restored after the test, whatever it sets
    monkeypatch.delenv(ray_exec.PREEMPTION_WATCHER_ENV)
    if user is not None:
        monkeypatch.setenv(ray_exec.PREEMPTION_WATCHER_ENV, user)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": a} for a in alive])
    with ray_exec.lean_train_settings():
        assert os.environ.get(ray_exec.PREEMPTION_WATCHER_ENV) == expected
    # undone afterwards: a node that joins later gets Ray Train's default again; a user's value stays
    assert os.environ.get(ray_exec.PREEMPTION_WATCHER_ENV) == user
