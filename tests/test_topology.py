"""The topology declared in schemas/topology.py is the one the code runs and the docs show."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ops.cli import main
from pipeline.app import NOTIFY, STAGE_FACTORIES, parse_stage_list
from pipeline.config import ConfigError, load_config
from pipeline.topics import DATA_TOPICS, STATEFUL_STAGES
from schemas import topology

DOCS = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def test_the_runtime_builds_exactly_the_declared_stages():
    assert set(STAGE_FACTORIES) == {s.name for s in topology.PURE_STAGES}
    assert topology.NOTIFY.name == NOTIFY


@pytest.mark.parametrize("spec", topology.PURE_STAGES, ids=lambda s: s.name)
def test_each_stage_reads_what_the_topology_declares(spec):
    stage = STAGE_FACTORIES[spec.name](load_config(env={}))
    assert stage.name == spec.name
    assert stage.inputs == spec.reads
    assert stage.stateful == spec.stateful


def test_every_declared_topic_is_created_and_every_changelog_belongs_to_a_stage():
    declared = {t for s in topology.STAGES for t in (*s.reads, *s.writes)}
    assert declared <= set(DATA_TOPICS)
    assert set(STATEFUL_STAGES) == {s.name for s in topology.STAGES if s.stateful}


def test_run_stages_accepts_exactly_the_declared_names():
    config = load_config(env={})
    assert parse_stage_list("ingest,windows,notify", config) == ["ingest", "windows", "notify"]
    with pytest.raises(ConfigError, match="unknown stage nope"):
        parse_stage_list("ingest,nope", config)
    assert set(parse_stage_list("all", config)) == {s.name for s in topology.STAGES}


def test_docs_show_the_table_prodmon_topics_show_prints(capsys):
    assert main(["topics", "show"]) == 0
    printed = capsys.readouterr().out.strip()
    docs = DOCS.read_text(encoding="utf-8")
    shown = re.search(r"<!-- topology: .*? -->\n(.*?)\n<!-- /topology -->", docs, re.S)
    assert shown is not None, "docs/architecture.md lost its topology table"
    assert shown.group(1).strip() == printed
    for spec in topology.STAGES:
        assert f"| {spec.name} |" in printed
