"""The cluster's settings: checked at set(), defaulted at start, and task_backend="cluster" needs a cluster."""

from __future__ import annotations

import pytest

from pyswoole import Mode
from pyswoole.settings import normalize, resolve


def test_the_cluster_settings_are_checked_and_defaulted():
    given = {"cluster": "redis://127.0.0.1:6379/0", "cluster_node": "a", "task_backend": "cluster"}
    effective = resolve(given, Mode.BASE, cpu_count=2)
    assert effective["cluster_node_ttl"] == 10
    assert effective["cluster_task_timeout"] == 30
    assert effective["task_backend"] == "cluster"
    assert resolve({}, Mode.BASE, cpu_count=2)["task_backend"] == "local"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"cluster": "http://127.0.0.1:6379"}, "cluster"),
        ({"cluster": ""}, "cluster"),
        ({"cluster_node": ""}, "cluster_node"),
        ({"cluster_node_ttl": 0.1}, "cluster_node_ttl"),
        ({"cluster_task_timeout": -1}, "cluster_task_timeout"),
        ({"task_backend": "kafka"}, "task_backend"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(settings, named):
    with pytest.raises(ValueError, match=named):
        normalize(settings)


def test_task_backend_cluster_needs_a_cluster():
    with pytest.raises(ValueError, match="needs the cluster setting"):
        resolve({"task_backend": "cluster"}, Mode.BASE, cpu_count=2)
