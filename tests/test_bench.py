"""The episode sampler's guarantees and `showsay bench` / `showsay data` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.audio import write_wav
from edge.bench.episodes import EpisodeError, EpisodeSampler, view_distance
from edge.bench.manifest import ImageItem, ManifestError, SpeechItem, read_image_manifest, read_speech_manifest, write_manifest
from edge.cli import main

RATE = 16000


def items(n_classes=5, speakers=("a", "b", "c"), reps=4, images_per_class=6, views=False):
    speech = [SpeechItem(Path(f"{c}_{s}_{r}.wav"), str(c), s) for c in range(n_classes) for s in speakers for r in range(reps)]
    images = [ImageItem(Path(f"{c}_{k}.png"), str(c), k if views else None) for c in range(n_classes) for k in range(images_per_class)]
    return speech, images


@pytest.mark.parametrize("mode", ["different", "same"])
def test_episodes_keep_speakers_apart_and_matching_images_out_of_the_support_set(mode):
    speech, images = items()
    sampler = EpisodeSampler(speech, images, ways=4, shots=2, queries=6, speakers=mode)
    rng = np.random.default_rng(0)
    for _ in range(50):
        ep = sampler.sample(rng)
        assert len(set(ep.classes)) == 4 and len(ep.support_speech) == 8 == len(ep.support_images)
        teachers = {speech[i].speaker for i in ep.support_speech}
        assert len(teachers) == 1
        for q in ep.queries:
            assert speech[q].label in ep.classes
            assert (speech[q].speaker in teachers) == (mode == "same")
            assert q not in ep.support_speech
        assert not set(ep.matching) & set(ep.support_images)
        assert [images[m].label for m in ep.matching] == list(ep.classes)
        assert [images[i].label for i in ep.support_images] == list(ep.support_labels)
        assert [speech[i].label for i in ep.support_speech] == list(ep.support_labels)


def test_episodes_are_deterministic_for_a_seed():
    speech, images = items()
    sampler = EpisodeSampler(speech, images, 3, 1, 4)
    a = [sampler.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [sampler.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b


def test_min_view_gap_is_circular_and_respected():
    assert view_distance(0, 71, 72) == 1 and view_distance(10, 50, 72) == 32
    speech, images = items(images_per_class=72, views=True)
    sampler = EpisodeSampler(speech, images, 3, 2, 4, min_view_gap=20)
    rng = np.random.default_rng(0)
    for _ in range(30):
        ep = sampler.sample(rng)
        for k, m in enumerate(ep.matching):
            support_views = [images[i].view for i, lab in zip(ep.support_images, ep.support_labels) if lab == ep.classes[k]]
            assert all(view_distance(images[m].view, v, 72) >= 20 for v in support_views)


def test_sampler_errors_are_clear():
    speech, images = items(n_classes=3)
    with pytest.raises(EpisodeError, match="need 5 classes present in both manifests; found 3"):
        EpisodeSampler(speech, images, 5, 1, 1)
    with pytest.raises(EpisodeError, match="needs a view column"):
        EpisodeSampler(speech, images, 2, 1, 1, min_view_gap=3)
    one_speaker = [s for s in speech if s.speaker == "a"]
    with pytest.raises(EpisodeError, match="at least two speakers"):
        EpisodeSampler(one_speaker, images, 2, 1, 1)
    sampler = EpisodeSampler(speech, images, 2, 5, 1)  # 4 recordings per speaker and class, 5 shots asked
    with pytest.raises(EpisodeError, match="could not draw"):
        sampler.sample(np.random.default_rng(0), attempts=5)


def make_toy_data(root: Path) -> tuple[Path, Path]:
    """Three 'words' (rising, falling, steady tones) by three speakers (pitch shifts); three 'objects' (shapes)."""
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(int(0.4 * RATE)) / RATE
    for word, (f0, f1) in {"rise": (300, 1500), "fall": (1500, 300), "flat": (800, 800)}.items():
        for spk, shift in {"low": 0.9, "mid": 1.0, "high": 1.1}.items():
            for r in range(3):
                freq = shift * (f0 + (f1 - f0) * t / t[-1])
                x = 0.4 * np.sin(2 * np.pi * np.cumsum(freq) / RATE) + 0.01 * rng.normal(size=t.size)
                x = np.concatenate([np.zeros(1600), x, np.zeros(1600)])
                name = f"wav/{word}_{spk}_{r}.wav"
                (root / "wav").mkdir(parents=True, exist_ok=True)
                write_wav(root / name, x, RATE)
                rows.append((name, word, spk))
    write_manifest(root / "speech.csv", ("path", "label", "speaker"), rows)
    rows = []
    (root / "img").mkdir(exist_ok=True)
    for word in ("rise", "fall", "flat"):
        for k in range(4):
            img = np.zeros((28, 28), np.uint8)
            jitter = k % 2
            if word == "rise":
                cv2.line(img, (4 + jitter, 24), (24, 4 + jitter), 255, 3)
            elif word == "fall":
                cv2.line(img, (4 + jitter, 4), (24, 24 - jitter), 255, 3)
            else:
                cv2.circle(img, (14 + jitter, 14), 8, 255, 3)
            name = f"img/{word}_{k}.png"
            cv2.imwrite(str(root / name), img)
            rows.append((name, word))
    write_manifest(root / "images.csv", ("path", "label"), rows)
    return root / "speech.csv", root / "images.csv"


def test_bench_cli_end_to_end(tmp_path, capsys):
    speech_csv, images_csv = make_toy_data(tmp_path)
    out = tmp_path / "out.json"
    plot = tmp_path / "plot.png"
    rc = main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--shots", "1",
               "--episodes", "6", "--queries", "5", "--seeds", "0,1", "--json", str(out), "--plot", str(plot), "--quiet",
               "--speech-encoder", "dtw", "--image-encoder", "pixels"])  # without these: the config's encoders
    assert rc == 0
    summary = json.loads(out.read_text())
    for key in ("ways", "shots", "episodes", "queries", "speakers", "speech_encoder", "image_encoder", "accuracy", "ci95",
                "speech_accuracy", "image_accuracy", "seconds_per_query"):
        assert key in summary
    # The toy words and shapes are unambiguous: DTW and pixels get every one right.
    assert summary["accuracy"] == 1.0 and summary["speech_accuracy"] == 1.0 and summary["image_accuracy"] == 1.0
    assert summary["accuracy_distance_only"] == 1.0 and summary["mutual_exclusivity"] == 0.05  # the config default
    assert summary["seeds"] == [0, 1] and len(summary["per_seed"]) == 2
    assert (summary["protocol"], summary["speech_protocol"], summary["image_protocol"]) == ("seeds", "seeds", "seeds")
    table = capsys.readouterr().out
    assert "| 100.0 ± 0.0 |" in table and table.startswith("| protocol | speech encoder") and "\n| seeds | dtw-mfcc-" in table
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[0] > 200
    # Same seed, same answer.
    out2 = tmp_path / "again.json"
    main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "6", "--queries", "5",
          "--seeds", "0,1", "--json", str(out2), "--quiet", "--speech-encoder", "dtw", "--image-encoder", "pixels"])
    assert json.loads(out2.read_text())["per_seed"] == summary["per_seed"]


def test_bench_mutual_exclusivity_option(tmp_path, capsys):
    speech_csv, images_csv = make_toy_data(tmp_path)
    args = ["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "4", "--queries", "3", "--quiet",
            "--speech-encoder", "dtw", "--image-encoder", "pixels"]
    for value, want in (("off", None), ("0.2", 0.2)):
        out = tmp_path / f"{value}.json"
        assert main([*args, "--mutual-exclusivity", value, "--json", str(out)]) == 0
        summary = json.loads(out.read_text())
        assert summary["mutual_exclusivity"] == want and summary["accuracy"] == summary["accuracy_distance_only"] == 1.0
    assert "multimodal, distance only %" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--mutual-exclusivity", "0"])
    assert "a temperature >= 0.001 or off, got '0'" in capsys.readouterr().err


def test_bench_word_best_of_option(tmp_path, capsys):
    speech_csv, images_csv = make_toy_data(tmp_path)
    args = ["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--shots", "3", "--episodes", "4", "--queries", "3", "--quiet",
            "--speech-encoder", "dtw", "--image-encoder", "pixels"]
    for value, want in ((None, 2), ("1", 1)):  # None: the config default
        out = tmp_path / f"{value}.json"
        assert main([*args, *(["--word-best-of", value] if value else []), "--json", str(out)]) == 0
        summary = json.loads(out.read_text())
        assert summary["word_best_of"] == want and summary["speech_accuracy"] == 1.0  # the toy words are unambiguous
    assert main([*args, "--word-best-of", "0"]) == 1
    assert "--word-best-of must be >= 1, got 0" in capsys.readouterr().err


def test_bench_dtw_warp_option(tmp_path, capsys):
    speech_csv, images_csv = make_toy_data(tmp_path)  # speakers' pitches 10% apart
    args = ["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "4", "--queries", "3", "--quiet",
            "--speech-encoder", "dtw", "--image-encoder", "pixels"]
    for value, want in ((None, 0.0), ("0.15", 0.15)):  # None: the config default
        out = tmp_path / f"{value}.json"
        assert main([*args, *(["--dtw-warp", value] if value else []), "--json", str(out)]) == 0
        summary = json.loads(out.read_text())
        assert summary["dtw_warp"] == want and summary["speech_accuracy"] == 1.0
    assert main([*args, "--dtw-warp", "0.7"]) == 1
    assert "--dtw-warp must be in [0, 0.5], got 0.7" in capsys.readouterr().err


def test_bench_cli_bad_input(tmp_path, capsys):
    speech_csv, images_csv = make_toy_data(tmp_path)
    assert main(["bench", "--speech", str(tmp_path / "none.csv"), "--images", str(images_csv), "--quiet"]) == 1
    assert "none.csv: no such manifest" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("file,word\nx.wav,a\n")
    assert main(["bench", "--speech", str(bad), "--images", str(images_csv), "--quiet"]) == 1
    assert "header must have path,label,speaker" in capsys.readouterr().err
    assert main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "10", "--quiet"]) == 1
    assert "need 10 classes" in capsys.readouterr().err
    (tmp_path / "wav" / "rise_low_0.wav").write_bytes(b"broken")
    assert main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "30", "--quiet"]) == 1
    assert "rise_low_0.wav: not a readable wav or FLAC file" in capsys.readouterr().err
    with pytest.raises(ManifestError, match=r"images.csv:2: view must be an integer"):
        (tmp_path / "images.csv").write_text("path,label,view\nimg/a.png,a,front\n")
        read_image_manifest(tmp_path / "images.csv")


def test_data_helpers_on_the_shared_sets(shared_data, tmp_path):
    assert main(["data", "fsdd", "--root", str(shared_data / "fsdd"), "--out", str(tmp_path / "fsdd.csv")]) == 0
    speech = read_speech_manifest(tmp_path / "fsdd.csv")
    assert len(speech) == 2000 and {s.speaker for s in speech} == {"jackson", "nicolas", "theo", "yweweler"}
    assert all(s.path.is_file() for s in speech[:20])
    assert main(["data", "mnist", "--root", str(shared_data / "mnist"), "--out", str(tmp_path / "mnist"), "--per-class", "30"]) == 0
    images = read_image_manifest(tmp_path / "mnist" / "mnist.csv")
    assert len(images) == 300 and sorted({i.label for i in images}) == [str(d) for d in range(10)]
    assert main(["data", "coil20", "--npz", str(shared_data / "coil20" / "coil20_objects_01_10.npz"), "--out", str(tmp_path / "coil")]) == 0
    coil = read_image_manifest(tmp_path / "coil" / "coil20.csv")
    assert len(coil) == 720 and {i.view for i in coil} == set(range(72))
    # The seeds' baseline on real recordings: well above chance (10%) for every modality.
    out = tmp_path / "b.json"
    assert main(["bench", "--speech", str(tmp_path / "fsdd.csv"), "--images", str(tmp_path / "mnist" / "mnist.csv"),
                 "--episodes", "20", "--json", str(out), "--quiet", "--speech-encoder", "dtw", "--image-encoder", "pixels"]) == 0
    s = json.loads(out.read_text())
    assert s["accuracy"] > 0.15 and s["speech_accuracy"] > 0.3 and s["image_accuracy"] > 0.25
