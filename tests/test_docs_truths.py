"""What the docs and samples say about defaults, paths and scripts is what the code does (issue 19, item 18)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.config import load_config
from edge.encoders import UNKNOWN_WORD_CHOSEN, EncoderSettings
from edge.matching import MatchSettings

ROOT = Path(__file__).resolve().parents[1]
UNKNOWN_WORD_CHOSEN_SHIPPED = {k: v for k, v in UNKNOWN_WORD_CHOSEN.items() if k != "default"}  # "default" is triplet's old name
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "edge").glob("**/*.md"))]


def test_the_readme_states_the_dtw_warp_default():
    text = " ".join((ROOT / "README.md").read_text().split())
    stated = re.search(r"default the config's `matching\.dtw_warp`, ([0-9.]+)", text)
    assert stated, "the README no longer says what --dtw-warp defaults to"
    assert float(stated.group(1)) == MatchSettings().dtw_warp


def test_the_demo_config_quotes_the_product_thresholds():
    text = (ROOT / "edge" / "samples" / "demo.yaml").read_text()
    quoted = re.search(r"product defaults \(([0-9.]+), ([0-9.]+)\)", text)
    assert quoted, "demo.yaml no longer quotes the product thresholds"
    defaults = MatchSettings()
    assert defaults.unknown_word_distance == "encoder"  # the value measured for the speech encoder in use
    product = UNKNOWN_WORD_CHOSEN[EncoderSettings().speech]
    assert (float(quoted.group(1)), float(quoted.group(2))) == (product, defaults.not_in_view_distance)


def test_every_script_the_docs_run_is_in_the_repository():
    cited = set()
    for doc in DOCS:
        cited |= {(doc.name, m) for m in re.findall(r"python3? (\S+\.py)\b", doc.read_text())}
    assert cited, "no script found: the pattern is wrong"
    missing = sorted((doc, path) for doc, path in cited if not (ROOT / path).is_file())
    assert not missing, f"scripts the docs run but the repository lacks: {missing}"


def test_a_relative_camera_file_is_taken_from_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "robot"
    folder.mkdir()
    cfg_file = folder / "showsay.yaml"
    monkeypatch.chdir(tmp_path)  # the working directory is not the config's folder
    cfg_file.write_text("camera: {source: clips/table.mp4}\ntensorrt: {timing_cache_dir: cache}\n")
    cfg = load_config(cfg_file)
    assert cfg.camera.source == str(folder / "clips" / "table.mp4")
    assert cfg.tensorrt.timing_cache_dir == str(folder / "cache")
    for kept in ("0", "rtsp://10.0.0.5/stream", "videotestsrc ! videoconvert ! appsink", "/abs/cam.mp4"):
        cfg_file.write_text(f"camera: {{source: '{kept}'}}\n")
        assert load_config(cfg_file).camera.source == kept


def test_make_bench_says_where_the_datasets_go(tmp_path):
    make = shutil.which("make")
    assert make, "make missing: apt-get install make"
    result = subprocess.run([make, "-s", "-C", str(ROOT), "bench-data", f"SHARED={tmp_path / 'nowhere'}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"no fsdd dataset at {tmp_path / 'nowhere'}/fsdd" in result.stderr and "SHARED=" in result.stderr


@pytest.mark.shared_data
def test_make_bench_finds_the_datasets_beside_the_checkout_by_default(shared_data):
    """The fixture is ../shared/data beside the checkout, what the Makefile looks for without SHARED=."""
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "bench-data"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_readme_states_the_rejection_threshold_defaults():
    text = " ".join((ROOT / "README.md").read_text().split())
    stated = re.search(r"`matching\.unknown_word_distance` \(`encoder`: the value measured for the speech encoder in use, "
                       r"([^)]*)\) and `matching\.not_in_view_distance` \(([0-9.]+)\)", text)
    assert stated, "the README no longer says what the rejection thresholds default to"
    defaults = MatchSettings()
    assert defaults.unknown_word_distance == "encoder"
    quoted = dict((name, float(value)) for name, value in re.findall(r"([a-z-]+) ([0-9.]+)", stated.group(1)))
    assert quoted == UNKNOWN_WORD_CHOSEN_SHIPPED and float(stated.group(2)) == defaults.not_in_view_distance
