"""The instance is the data dir's own unless set: generated once for a new
data dir, `default` for one that holds state from before (its containers
carry that label), and SHIPWAY_INSTANCE / the flag win."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from core.instance import INSTANCE_FILE, valid_instance
from core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_new_data_dirs_get_distinct_instances_kept_across_loads(tmp_path: Path) -> None:
    a, origin_a = load_settings({"data_dir": tmp_path / "a"}, environ={})
    b, _ = load_settings({"data_dir": tmp_path / "b"}, environ={})
    assert a.instance != b.instance
    assert a.instance != "default" and valid_instance(a.instance)
    assert a.instance.isalnum() and a.instance == a.instance.lower() and len(a.instance) <= 12
    kept = tmp_path / "a" / INSTANCE_FILE
    assert kept.read_text().strip() == a.instance
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert "generated" in origin_a["instance"]
    again, origin = load_settings({"data_dir": tmp_path / "a"}, environ={})
    assert again.instance == a.instance
    assert origin["instance"] == f"file {kept}"


def test_a_data_dir_with_state_but_no_instance_file_keeps_default(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "shipway.db").write_bytes(b"")  # an install from before
    settings, origin = load_settings({"data_dir": old}, environ={})
    assert settings.instance == "default"
    assert (old / INSTANCE_FILE).read_text().strip() == "default"
    assert "default" in origin["instance"]


def test_env_and_flag_win_and_write_nothing(tmp_path: Path) -> None:
    settings, origin = load_settings({"data_dir": tmp_path}, environ={"SHIPWAY_INSTANCE": "mine"})
    assert settings.instance == "mine" and origin["instance"] == "env SHIPWAY_INSTANCE"
    settings, origin = load_settings({"data_dir": tmp_path, "instance": "flagged"},
                                     environ={"SHIPWAY_INSTANCE": "mine"})
    assert settings.instance == "flagged" and origin["instance"] == "flag"
    assert not (tmp_path / INSTANCE_FILE).exists()


def test_print_config_shows_the_instance_and_where_it_came_from(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHIPWAY_INSTANCE"}
    out = subprocess.run([sys.executable, "-m", "server", "--data-dir", str(tmp_path / "d"),
                          "--print-config"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    shown = json.loads(out)
    kept = (tmp_path / "d" / INSTANCE_FILE).read_text().strip()
    assert shown["settings"]["instance"] == kept
    assert str(tmp_path / "d" / INSTANCE_FILE) in shown["origin"]["instance"]
    out = subprocess.run([sys.executable, "-m", "server", "--data-dir", str(tmp_path / "d"),
                          "--instance", "other", "--print-config"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["settings"]["instance"] == "other"
