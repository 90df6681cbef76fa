"""Every runnable stage fulfils the typed stage contract (stages/base.py): the runtime and
/metrics read its optional capabilities as members, never by probing attributes."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from pipeline.app import STAGE_FACTORIES
from pipeline.config import load_config
from stages.base import StageBase


@pytest.mark.parametrize("name", sorted(STAGE_FACTORIES))
def test_each_stage_has_the_contracts_members_with_their_types(name):
    stage = STAGE_FACTORIES[name](load_config(env={}))
    assert isinstance(stage, StageBase)
    assert stage.name == name and isinstance(stage.state_name, str)
    assert all(isinstance(t, str) for t in (*stage.inputs, *stage.external_inputs))
    holds = stage.hold_offsets()
    assert holds is None or isinstance(holds, Mapping)
    counters = stage.counters()
    assert isinstance(counters, Mapping)
    assert all(isinstance(v, int | float) for v in counters.values())
    size = stage.state_size()
    assert size is None or (isinstance(size, int) and size >= 0)
    stage.assign([0])
    assert isinstance(stage.tick(0.0).emits, list)
    stage.revoke([0])


def test_stages_that_keep_windows_hold_their_commits_and_the_others_do_not():
    config = load_config(env={})
    holding = {n for n, make in STAGE_FACTORIES.items() if make(config).hold_offsets() is not None}
    assert holding == {"ingest", "windows"}  # the two phases of windowing
