"""End to end: ``showsay run`` hears words through a real audio stream (PulseAudio null sink), sees the
bundled video as its camera, is taught three words with button presses over the control socket, then
answers spoken requests; memory survives a restart; microphone loss and end of video are reported
and the daemon recovers."""
from __future__ import annotations

import argparse
import json
import time

import pytest

from edge.memory import Memory
from tests.daemon_process import SAMPLES, DaemonProcess, EventCollector, PulseServer, word_wav, write_config

SCRIPT = json.loads((SAMPLES / "session.json").read_text())
TEACH_VOICE = tuple(SCRIPT["voices"]["teach"])
ASK_VOICE = tuple(SCRIPT["voices"]["ask"])
SLOT_W = 320 / 3  # the table scene has three objects side by side in a 320 px wide frame


def slot(box: list[int]) -> int:
    return int((box[0] + box[2] / 2) // SLOT_W)


@pytest.fixture
def pulse(tmp_path):
    server = PulseServer(tmp_path / "xdg")
    (tmp_path / "xdg").mkdir()
    server.start()
    yield server
    server.stop()


@pytest.mark.timeout(240)
def test_teach_three_words_then_ask_through_a_real_audio_stream(tmp_path, pulse):
    words = {w: word_wav(w, tmp_path / f"teach-{w}.wav", TEACH_VOICE) for w in ("apple", "star", "cube")}
    asks = {w: word_wav(w, tmp_path / f"ask-{w}.wav", ASK_VOICE) for w in ("apple", "star", "cube", "telephone")}
    config = write_config(tmp_path)
    daemon = DaemonProcess(config, pulse.env, tmp_path)
    try:
        lines = daemon.notifications("READY=1", timeout_s=60)
        t0 = time.monotonic()  # the video (the camera) started just before READY=1
        assert any(l.startswith("STATUS=") for l in lines)
        events = EventCollector(tmp_path / "control.sock")

        def at(video_s: float) -> None:
            time.sleep(max(0.0, t0 + video_s - time.monotonic()))

        # teach: press (socket), the object is held up in the middle, say its name once
        pair_of = {}
        for (word, start_s) in (("apple", 0.6), ("star", 5.6), ("cube", 10.6)):
            at(start_s)
            n = len(events.events)
            assert events.request({"cmd": "teach"})["state"] == "teaching"
            events.wait_for("teach_started", n)
            pulse.play(words[word])
            taught = events.wait_for("taught", n, timeout_s=8)
            pair_of[word] = taught["pair_id"]
            assert events.request({"cmd": "label", "pair_id": taught["pair_id"], "label": word})["ok"]
        assert sorted(pair_of.values()) == [1, 2, 3]
        # a press, then a second press: cancelled, nothing taught
        n = len(events.events)
        events.request({"cmd": "teach"})
        events.request({"cmd": "teach"})
        assert events.wait_for("teach_cancelled", n)["reason"] == "second_press"

        # ask: the table shows cube, apple, star from left to right (video 15-25 s)
        expected_slot = {"cube": 0, "apple": 1, "star": 2}
        for word, start_s in (("star", 15.8), ("apple", 18.0), ("cube", 20.2)):
            at(start_s)
            n = len(events.events)
            pulse.play(asks[word])
            ev = events.wait_for("resolved", n, timeout_s=6)
            assert ev["label"] == word and ev["pair_id"] == pair_of[word], ev
            assert slot(ev["box"]) == expected_slot[word], ev
            assert ev["latency_ms"] < 2000 and ev["image"]
        n = len(events.events)
        pulse.play(asks["telephone"])
        assert events.wait_for("unknown_word", n, timeout_s=6)["speech_distance"] > 0.35
        # the apple is taken away (video 25 s on): not in view
        at(25.8)
        n = len(events.events)
        pulse.play(asks["apple"])
        ev = events.wait_for("not_in_view", n, timeout_s=6)
        assert ev["label"] == "apple"
        # end of the video: the camera is reported lost
        assert events.wait_for("device_lost", 0, timeout_s=10)["device"] == "camera"
        # the PulseAudio server goes away and comes back: the microphone is lost and recovered
        n = len(events.events)
        pulse.stop()
        lost = events.wait_for("device_lost", n, timeout_s=15)
        assert lost["device"] == "microphone"
        pulse.start()
        events.wait_for("device_recovered", n, timeout_s=30)
        n = len(events.events)
        time.sleep(1.0)
        pulse.play(asks["star"])  # heard again; the camera's last frame (star and cube) is seconds old now
        ev = events.wait_for("not_in_view", n, timeout_s=8)
        assert ev["label"] == "star" and ev["reason"] == "camera_frame_too_old" and ev["frame_age_s"] > 2.0, ev
        status = events.request({"cmd": "status"})
        assert status["pairs"] == 3 and status["state"] == "idle"
        events.close()
        assert daemon.stop() == 0, daemon.log()
    finally:
        daemon.stop()
    assert "STOPPING=1" in daemon.received and "WATCHDOG=1" in daemon.received
    assert "stopped" in daemon.log()
    with Memory(tmp_path / "state" / "memory.sqlite3") as memory:
        assert {p.label: p.pair_id for p in memory.pairs()} == pair_of

    # a restart loads the pairs; a request by file (ask) is answered from the first video scene (apple held up)
    daemon = DaemonProcess(config, pulse.env, tmp_path)
    try:
        daemon.notifications("READY=1", timeout_s=60)
        events = EventCollector(tmp_path / "control.sock")
        assert [p["label"] for p in events.request({"cmd": "list"})["pairs"]] == ["apple", "star", "cube"]
        reply = events.request({"cmd": "ask", "wav": str(asks["apple"])})
        assert reply["ok"] and reply["event"] == "resolved" and reply["label"] == "apple", reply
        events.close()
    finally:
        assert daemon.stop() == 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("config", [None, "demo-baseline.yaml"], ids=["shipped-onnx", "baselines"])
def test_demo_runs_the_daemon_on_the_bundled_session(tmp_path, config):
    import subprocess
    import sys

    from tests.daemon_process import ROOT

    out = tmp_path / "demo"
    extra = ["--config", str(SAMPLES / config)] if config else []
    result = subprocess.run([sys.executable, "-m", "edge", "demo", "--out", str(out), *extra], cwd=ROOT,
                            capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "learned 3 of 3 words: apple, star, cube" in result.stdout
    assert "5 of 5 answers as expected" in result.stdout
    images = sorted(p.name for p in (out / "answers").glob("*.jpg"))
    assert len(images) == 4 and sum(n.endswith("-resolved.jpg") for n in images) == 3, images
    events = [json.loads(line)["event"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert events.count("taught") == 3 and events.count("resolved") == 3 and "unknown_word" in events


def test_demo_reports_a_model_it_cannot_load(tmp_path, capsys):
    from edge.commands.demo import register

    cfg = tmp_path / "demo.yaml"
    cfg.write_text("encoders:\n  speech: nowhere.onnx\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["demo", "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert args.func(args) == 1
    assert f"showsay demo: cannot start: {tmp_path / 'nowhere.onnx'}: no such model file" in capsys.readouterr().err


@pytest.mark.parametrize("speech", ["dtw", "ensemble"])  # ensemble: a shipped encoder fused with DTW (0.1)
def test_latency_benchmark_measures_the_controllers_answer_path(speech):
    from edge.commands.bench_latency import measure_latency

    res = measure_latency(speech, "pixels", pairs=20, n_candidates=10, n_requests=4)
    assert res["speech_encoder"].endswith("+dtw") if speech == "ensemble" else res["speech_encoder"].startswith("dtw")
    assert res["pairs"] == 20 and res["candidates"] == 10 and res["requests"] == 4
    assert 0 < res["p50_ms"] <= res["p95_ms"]
    assert set(res["parts_p50_ms"]) == {"features", "speech_embedding", "candidate_embeddings", "match"}
    # cached candidate embeddings cost nothing on the critical path; uncached ones are computed there
    assert res["parts_p50_ms"]["candidate_embeddings"] < 1.0


def test_latency_benchmark_stores_views_per_pair_and_compares_view_counts_in_alternating_rounds():
    from edge.commands.bench_latency import measure_latency

    got = measure_latency("default", "pixels", pairs=12, n_candidates=6, n_requests=4, views=(3, 1), rounds=2, mirrors=(False, True))
    assert [(r["views_per_pair"], r["mirror_views"]) for r in got] == [(3, False), (3, True), (1, False), (1, True)]
    assert [r["image_rows"] for r in got] == [36, 72, 12, 24]  # every pair holds its views (and their mirrors), as teaching stores them
    assert measure_latency("dtw", "pixels", pairs=5, n_candidates=4, n_requests=2, views=(2,))["image_rows"] == 10  # the config's: not mirrored
    for r in got:
        assert r["requests"] == 4 and 0 < r["p50_ms"] <= r["p95_ms"]
        assert 0 <= r["heard_p50_ms"] <= r["p50_ms"]  # the speech side left out: what a heard request waits for


def test_idle_benchmark_reports_cpu_and_memory(tmp_path):
    import subprocess
    import sys

    from tests.daemon_process import ROOT

    out = tmp_path / "idle.json"
    result = subprocess.run([sys.executable, "-m", "edge", "bench-idle", "--seconds", "3", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(out.read_text())
    assert 0 < got["cpu_percent_of_one_core"] < 400 and got["rss_mb_max"] > 10
    assert got["camera_fps"] > 5  # the looped video plays at about 15 fps
