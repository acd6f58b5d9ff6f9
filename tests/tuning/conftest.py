"""Fixtures of the tuning tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """A local Ray of 2 CPUs for one test module (modules that start their own Ray, a cluster or a
    CLI child do not use it); afterwards Ray's and its workers' output go back to where a study that
    ran in it had routed them from."""
    import ray

    from rblock_tune.tuning._ray_output import route_ray_output, route_worker_output
    from rblock_tune.tuning._verbosity import VERBOSE

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield ray
    route_ray_output(Path(os.devnull), VERBOSE)
    route_worker_output(VERBOSE)
    ray.shutdown()
