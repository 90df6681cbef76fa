"""Configuration: TOML + environment, refused values name their key, secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config


def test_defaults_then_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "prodmon.toml"
    path.write_text('[kafka]\nbootstrap = "file:1"\nprefix = "f."\n[runtime]\npartitions = 8\n')
    config = load_config(path, env={"PRODMON_PREFIX": "env.", "PRODMON_RUNTIME__PARTITIONS": "6"})
    assert config.kafka.bootstrap == "file:1"
    assert config.kafka.prefix == "env."
    assert config.runtime.partitions == 6
    config = load_config(path, env={}, overrides={"kafka.bootstrap": "cli:2"})
    assert config.kafka.bootstrap == "cli:2"


@pytest.mark.parametrize(
    ("toml", "env", "names"),
    [
        ("[runtime]\npartitions = 0\n", {}, "runtime.partitions"),
        ('[runtime]\nmax_batch_records = "many"\n', {}, "runtime.max_batch_records"),
        ("[runtime]\nno_such_key = 1\n", {}, "runtime.no_such_key"),
        ("[nosection]\nx = 1\n", {}, "nosection"),
        ('[kafka]\nsecurity_protocol = "TLS"\n', {}, "kafka.security_protocol"),
        ('[kafka]\nbootstrap = "nohostport"\n', {}, "kafka.bootstrap"),
        ("", {"PRODMON_INGEST__DEDUP_WINDOW_S": "soon"}, "ingest.dedup_window_s"),
        ("[windows]\nclose_part_series = 0\n", {}, "windows.close_part_series"),
        (
            '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "MD5"\n',
            {},
            "kafka.sasl_mechanism",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path, toml, env, names):
    path = tmp_path / "prodmon.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_config(path, env=env)


def test_secrets_come_only_from_the_environment_and_are_masked(tmp_path):
    path = tmp_path / "prodmon.toml"
    path.write_text('[kafka]\nsasl_plain_password = "hunter2"\n')
    with pytest.raises(ConfigError, match="environment"):
        load_config(path, env={})
    config = load_config(
        None,
        env={
            "PRODMON_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PRODMON_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
            "PRODMON_KAFKA__SASL_PLAIN_USERNAME": "svc",
            "PRODMON_KAFKA__SASL_PLAIN_PASSWORD": "hunter2",
        },
    )
    assert config.kafka.client_kwargs()["sasl_plain_password"] == "hunter2"
    assert "hunter2" not in repr(config.redacted())


def test_missing_or_invalid_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad, env={})


def test_the_readme_configuration_example_loads(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("```toml", 1)[1].split("```", 1)[0]
    path = tmp_path / "prodmon.toml"
    path.write_text(example, encoding="utf-8")
    config = load_config(path, env={"PRODMON_KAFKA__SASL_PLAIN_PASSWORD": "from-the-env"})
    assert config.windows.max_series_per_service == 1000
    assert config.fingerprint.token_patterns == {"ticket": "TCK-[A-Z]+"}


def test_a_wrong_type_names_the_full_key_path_and_the_value(tmp_path):
    path = tmp_path / "prodmon.toml"
    path.write_text('[windows]\nrollup_resolutions_s = [60, "hourly"]\n')
    with pytest.raises(ConfigError, match=r"windows\.rollup_resolutions_s\[1\]: .*'hourly'"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=r"fingerprint\.token_patterns: expected a JSON object"):
        load_config(None, env={"PRODMON_FINGERPRINT__TOKEN_PATTERNS": "[1"})


def test_environment_strings_become_the_typed_values():
    config = load_config(
        None,
        env={
            "PRODMON_NOTIFY__DRY_RUN": "yes",
            "PRODMON_BASELINE__METRICS": "p99_ms, error_rate_pct",
            "PRODMON_WINDOWS__ROLLUP_RESOLUTIONS_S": "60,600",
            "PRODMON_KAFKA__SASL_MECHANISM": "",
        },
    )
    assert config.notify.dry_run is True
    assert config.baseline.metrics == ("p99_ms", "error_rate_pct")
    assert config.windows.rollup_resolutions_s == (60.0, 600.0)
    assert config.kafka.sasl_mechanism is None


def test_stage_configs_take_every_setting_of_their_section(tmp_path):
    from pipeline.app import STAGE_FACTORIES

    path = tmp_path / "prodmon.toml"
    path.write_text(
        "[windows]\nwindow_s = 5\nallowed_lateness_s = 2\nidle_flush_s = 7\n"
        "early_min_events = 9\nmax_series_per_service = 11\nseries_idle_s = 99\n"
        "close_part_series = 64\n"
        '[baseline]\nresolution = "10s"\nidle_expiry_s = 77\nwarmup = 12\ncooldown = 33\n'
        "[ingest]\nmax_text_len = 500\ndedup_window_s = 60\n"
        "[fingerprint]\ncount_interval_s = 3\n"
    )
    config = load_config(path, env={})
    windows = STAGE_FACTORIES["windows"](config).core.config  # type: ignore[attr-defined]
    assert (windows.window_s, windows.allowed_lateness_s, windows.idle_flush_s) == (5, 2, 7)
    assert windows.early_min_events == 9 and windows.early_resolution == "10s"
    assert windows.limits.max_series_per_service == 11 and windows.limits.series_idle_s == 99
    assert windows.close_part_series == 64
    ingest_windows = STAGE_FACTORIES["ingest"](config).core.config  # type: ignore[attr-defined]
    assert ingest_windows.close_part_series == 64
    baseline = STAGE_FACTORIES["baseline"](config).config  # type: ignore[attr-defined]
    assert baseline.idle_expiry_s == 77 and baseline.resolution == "10s"
    assert (baseline.detector.warmup, baseline.detector.cooldown) == (12, 33)
    ingest = STAGE_FACTORIES["ingest"](config).ingest.config  # type: ignore[attr-defined]
    assert ingest.limits.max_text_len == 500 and ingest.dedup_window_s == 60
    fingerprint = STAGE_FACTORIES["fingerprint"](config).config  # type: ignore[attr-defined]
    assert fingerprint.count_interval_s == 3
