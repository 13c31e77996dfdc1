"""The episode sampler's guarantees and `showsay bench` / `showsay data` end to end."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge
from edge.audio import write_wav
from edge.bench.episodes import EpisodeError, EpisodeSampler, view_distance
from edge.bench.manifest import ImageItem, ManifestError, SpeechItem, read_image_manifest, read_speech_manifest, write_manifest
from edge.cli import main
from edge.images import load_image

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
    # Every missing or unreadable file is named at once, before any episode is drawn.
    (tmp_path / "wav" / "rise_low_0.wav").write_bytes(b"broken")
    (tmp_path / "wav" / "fall_mid_1.wav").unlink()
    (tmp_path / "wav" / "flat_high_2.wav").write_bytes(b"")
    out = tmp_path / "never.json"
    assert main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "30", "--json", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "speech.csv: 3 of 27 listed files cannot be used" in err
    assert "rise_low_0.wav: not a wav or FLAC file (starts with b'brok')" in err and "fall_mid_1.wav: no such file" in err
    assert "flat_high_2.wav: an empty file" in err and not out.exists()
    make_toy_data(tmp_path)
    (tmp_path / "img" / "rise_0.png").unlink()
    assert main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--quiet"]) == 1
    assert "images.csv: 1 of 12 listed files cannot be used:\n" in capsys.readouterr().err
    # A file whose header looks right but whose body is broken is still named when the run reaches it.
    make_toy_data(tmp_path)
    (tmp_path / "wav" / "rise_low_0.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEdata\xff\xff\x00\x00ab")  # no fmt chunk
    assert main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "30", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rise_low_0.wav: not a readable wav or FLAC file (libsndfile: Error in WAV file. No 'data' chunk marker)" in err  # one line, the reason
    (tmp_path / "wav" / "rise_low_0.wav").write_bytes(b"RIFF\x24\0\0\0WAVE" + b"\0" * 32)  # chunkless: scipy's UnboundLocalError before
    assert main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "30", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rise_low_0.wav: not a readable wav or FLAC file (libsndfile: Error in WAV file. No 'data' chunk marker)" in err, err
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


def household(n_speakers=12, n_classes=5, seed=3, images_per_class=6):
    """Many speakers, each of whom said only some of the classes, once: one teacher cannot say them all."""
    rng = np.random.default_rng(seed)
    speech = []
    for s in range(n_speakers):
        for c in rng.choice(n_classes, 3, replace=False):
            speech.append(SpeechItem(Path(f"{c}_s{s}.wav"), str(c), f"s{s}"))
    images = [ImageItem(Path(f"{c}_{k}.png"), str(c)) for c in range(n_classes) for k in range(images_per_class)]
    return speech, images


@pytest.mark.parametrize("shots", [1, 2])
def test_teachers_half_never_lets_a_query_speaker_teach(shots):
    speech, images = household()
    speakers = sorted({s.speaker for s in speech})
    with pytest.raises(EpisodeError, match=r"one teacher in 20 tries: too few recordings per speaker \(try --teachers half\)"):
        EpisodeSampler(speech, images, 4, shots, 6).sample(np.random.default_rng(0), attempts=20)
    sampler = EpisodeSampler(speech, images, ways=4, shots=shots, queries=6, teachers="half")
    rng = np.random.default_rng(0)
    support_speakers = set()
    for _ in range(100):
        ep = sampler.sample(rng)
        assert len(ep.teaching) == len(speakers) // 2 and set(ep.teaching) <= set(speakers)  # 12 speakers: 6 teach, 6 ask
        taught_by = {speech[i].speaker for i in ep.support_speech}
        asked_by = {speech[q].speaker for q in ep.queries}
        assert taught_by <= set(ep.teaching) and not asked_by & set(ep.teaching)
        for c in ep.classes:  # every class of the episode can be asked by someone who did not teach
            assert any(s.label == c and s.speaker not in ep.teaching for s in speech)
        assert [speech[i].label for i in ep.support_speech] == list(ep.support_labels) and len(ep.support_speech) == 4 * shots
        assert all(speech[q].label in ep.classes for q in ep.queries) and not set(ep.queries) & set(ep.support_speech)
        support_speakers |= taught_by
    assert support_speakers == set(speakers)  # every speaker teaches in some episode and so asks in none of those
    # Same seed, same episodes; another seed, others.
    again = EpisodeSampler(speech, images, ways=4, shots=shots, queries=6, teachers="half")
    first = [sampler.sample(np.random.default_rng(11)) for _ in range(5)]
    assert first == [again.sample(np.random.default_rng(11)) for _ in range(5)]
    assert first != [again.sample(np.random.default_rng(12)) for _ in range(5)]


def test_teachers_half_draws_classes_a_sparse_corpus_can_teach():
    """Most words said by two or three people once each: the split comes first, then words it can teach and ask."""
    rng = np.random.default_rng(5)
    speech = [SpeechItem(Path(f"w{w}_s{s}.wav"), f"w{w}", f"s{s}") for w in range(60) for s in rng.choice(40, 2 + w % 2, replace=False)]
    images = [ImageItem(Path(f"w{w}_{k}.png"), f"w{w}") for w in range(60) for k in range(3)]
    sampler = EpisodeSampler(speech, images, ways=10, shots=1, queries=10, teachers="half")
    eps = [sampler.sample(rng, attempts=20) for _ in range(200)]
    assert all(len(set(ep.classes)) == 10 and not {speech[q].speaker for q in ep.queries} & set(ep.teaching) for ep in eps)
    with pytest.raises(EpisodeError, match=r"5-shot episode with half of the speakers teaching in 20 tries: at most 0 of the 60 classes had 5 recordings"):
        EpisodeSampler(speech, images, ways=10, shots=5, queries=10, teachers="half").sample(rng, attempts=20)


def test_teachers_half_with_an_odd_number_of_speakers_teaches_with_the_larger_half():
    speech, images = items(speakers=("a", "b", "c"))
    sampler = EpisodeSampler(speech, images, 3, 1, 4, teachers="half")
    rng = np.random.default_rng(0)
    eps = [sampler.sample(rng) for _ in range(30)]
    assert all(len(ep.teaching) == 2 for ep in eps) and len({ep.teaching for ep in eps}) == 3
    with pytest.raises(EpisodeError, match="--teachers half asks with the speakers who did not teach"):
        EpisodeSampler(speech, images, 3, 1, 4, speakers="same", teachers="half")


def todays_episode(sampler: EpisodeSampler, rng: np.random.Generator):
    """The one-teacher sampler as it was before --teachers (commit 7b9c5e6), kept here as the reference."""
    for _ in range(100):
        classes = [sampler.classes[i] for i in rng.choice(len(sampler.classes), sampler.ways, replace=False)]
        teacher = sampler.speakers_all[rng.integers(len(sampler.speakers_all))]
        support_speech, support_images, labels, matching = [], [], [], []
        ok = True
        for c in classes:
            own = sampler.speech_by[c].get(teacher, [])
            if len(own) < sampler.shots + (1 if sampler.speakers == "same" else 0):
                ok = False
                break
            support_speech.extend(int(i) for i in rng.choice(own, sampler.shots, replace=False))
            imgs = sampler.images_by[c]
            if len(imgs) < sampler.shots + 1:
                ok = False
                break
            chosen = [int(i) for i in rng.choice(imgs, sampler.shots, replace=False)]
            support_images.extend(chosen)
            labels.extend([c] * sampler.shots)
            pool = [i for i in imgs if i not in chosen and sampler._far_from(i, chosen, c)]
            if not pool:
                ok = False
                break
            matching.append(int(pool[rng.integers(len(pool))]))
        if not ok:
            continue
        used = set(support_speech)
        query_pool = {c: [i for spk, idx in sampler.speech_by[c].items() if (spk != teacher) == (sampler.speakers == "different")
                          for i in idx if i not in used] for c in classes}
        askable = [c for c in classes if query_pool[c]]
        if not askable:
            continue
        queries = []
        for _ in range(sampler.n_queries):
            c = askable[rng.integers(len(askable))]
            queries.append(int(query_pool[c][rng.integers(len(query_pool[c]))]))
        return (tuple(classes), tuple(support_speech), tuple(support_images), tuple(labels), tuple(queries), tuple(matching)), teacher
    raise AssertionError("the reference sampler could not draw an episode")


@pytest.mark.parametrize("speakers,shots,gap", [("different", 1, 0), ("different", 3, 0), ("same", 2, 0), ("different", 2, 20)])
def test_teachers_one_draws_todays_episodes(speakers, shots, gap):
    speech, images = items(n_classes=6, speakers=("a", "b", "c", "d"), reps=5, images_per_class=72, views=True)
    speech = [s for s in speech if not (s.speaker == "b" and s.label == "2")]  # a teacher who cannot say every class: retries
    sampler = EpisodeSampler(speech, images, 4, shots, 7, speakers=speakers, min_view_gap=gap)  # teachers="one", the default
    for seed in range(5):
        ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
        for _ in range(20):
            ep = sampler.sample(ours)
            want, teacher = todays_episode(sampler, ref)
            assert (ep.classes, ep.support_speech, ep.support_images, ep.support_labels, ep.queries, ep.matching) == want
            assert ep.teaching == (teacher,)


def test_query_verdict_says_where_a_miss_came_from():
    from edge.bench.runner import QueryOutcome

    classes = ("a", "b", "c")
    assert QueryOutcome("a", "a", 0.1, 0, 0.2, 0).verdict(classes) == "right"
    assert QueryOutcome("a", "b", 0.1, 1, 0.2, 1).verdict(classes) == "speech"
    assert QueryOutcome("a", "a", 0.1, 2, 0.2, 2).verdict(classes) == "image"
    assert QueryOutcome("a", "b", 0.1, 0, 0.2, 1).verdict(classes) == "right"  # a wrong word, the right image all the same


def _bench(speech_csv, images_csv, out, *extra):
    return main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "5", "--queries", "4",
                 "--seeds", "0,1", "--json", str(out), "--quiet", "--speech-encoder", "dtw", "--image-encoder", "pixels", *extra])


def test_bench_json_has_provenance_and_per_query_results(tmp_path, capsys):
    speech_csv, images_csv = make_toy_data(tmp_path)
    out = tmp_path / "half.json"
    assert _bench(speech_csv, images_csv, out, "--teachers", "half", "--fuse-dtw", "0") == 0
    assert "| different | half | 5 x 2 |" in capsys.readouterr().out
    run = json.loads(out.read_text())
    assert run["teachers"] == "half" and run["settings"]["teachers"] == "half" and run["format"] == 2
    for key in ("mutual_exclusivity", "word_best_of", "dtw_warp", "fuse_dtw", "speakers", "speech_features", "speech_encoder", "image_encoder"):
        assert key in run["settings"]
    prov = run["provenance"]
    assert prov["showsay_version"] == edge.__version__ and prov["arguments"]["teachers"] == "half" and prov["time_utc"].endswith("Z")
    assert prov["manifests"]["speech"]["sha256"] == hashlib.sha256(speech_csv.read_bytes()).hexdigest()
    assert "git_commit" in prov and "command" in prov
    episodes = run["per_episode"]
    assert len(episodes) == 10 and [e["seed"] for e in episodes] == [0] * 5 + [1] * 5 and [e["index"] for e in episodes[:5]] == list(range(5))
    speakers_of = {str(Path(r["path"]).name): r["speaker"] for r in csv.DictReader(speech_csv.open())}
    for e in episodes:
        assert len(e["queries"]) == 4 and len(e["support"]) == 3 and len(e["image_only"]) == 3 and len(e["teaching"]) == 2
        assert e["accuracy"] == np.mean([q["right"] for q in e["queries"]])
        for q in e["queries"]:
            assert q["speaker"] not in e["teaching"] and speakers_of[Path(q["utterance"]).name] == q["speaker"]
            assert q["label"] == q["heard"] == q["chosen"] and q["right"] and q["speech_right"] and q["distance_only_right"]  # toy data: all right
            assert q["miss"] is None and q["speech_distance"] >= 0 and 0 <= q["image_distance"] <= 2
            assert Path(q["image"]).name.startswith(q["chosen"] + "_")
    assert run["accuracy"] == np.mean([e["accuracy"] for e in episodes])


def test_compare_is_paired_and_refuses_other_episodes(tmp_path, capsys):
    speech_csv, images_csv = make_toy_data(tmp_path)
    a, b, other, old = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "other.json", tmp_path / "old.json"
    assert _bench(speech_csv, images_csv, a) == 0
    assert _bench(speech_csv, images_csv, b, "--image-encoder", "digits", "--mutual-exclusivity", "off") == 0
    assert _bench(speech_csv, images_csv, other, "--seeds", "2,3") == 0
    capsys.readouterr()
    assert main(["bench", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| multimodal | 40 |" in out and "| image-only | 30 |" in out and "McNemar p" in out
    assert "mutual_exclusivity: 0.05 -> None" in out and "image_encoder: 'pixels-" in out
    assert main(["bench", "--compare", str(a), str(other)]) == 1
    assert "were not drawn on the same episodes: seeds is [0, 1] vs [2, 3]" in capsys.readouterr().err
    run = json.loads(a.read_text())
    run["per_episode"][3]["id"] = "0" * 16
    other.write_text(json.dumps(run))
    assert main(["bench", "--compare", str(a), str(other)]) == 1
    assert "episode 3 of seed 0 draws other recordings or images" in capsys.readouterr().err
    old.write_text(json.dumps({k: v for k, v in run.items() if k != "per_episode"}))
    assert main(["bench", "--compare", str(old), str(a)]) == 1
    assert "old.json: has no per-episode results" in capsys.readouterr().err
    assert main(["bench", "--compare", str(tmp_path / "none.json"), str(a)]) == 1
    assert "none.json: no such results file" in capsys.readouterr().err
    del run["per_episode"][0]["queries"]
    other.write_text(json.dumps(run))
    assert main(["bench", "--compare", str(other), str(other)]) == 1
    assert "a per-episode record lacks 'queries' (not written by showsay bench --json?)" in capsys.readouterr().err
    assert main(["bench", "--images", str(images_csv)]) == 1
    assert "--speech is required (or --compare A.json B.json)" in capsys.readouterr().err
    assert _bench(speech_csv, images_csv, a / "x.json") == 1  # a.json is a file, not a folder
    assert "a.json" in capsys.readouterr().err


def _record(seed, index, rights):
    return {"seed": seed, "index": index, "id": f"{seed}-{index}", "queries": [{"right": r, "distance_only_right": r, "speech_right": r} for r in rights],
            "image_only": [{"right": True}]}


def test_paired_statistics():
    from edge.bench.compare import compare_runs, mcnemar_exact

    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(0, 6) == pytest.approx(2 * 0.5**6) and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(2, 10) == pytest.approx(0.0385742, abs=1e-6)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    base = {"ways": 2, "shots": 1, "queries": 4, "speakers": "different", "teachers": "one", "seeds": [0], "episodes": 20}
    a = {**base, "per_episode": [_record(0, k, [True, False, False, False]) for k in range(20)]}
    b = {**base, "per_episode": [_record(0, k, [True, True, k % 2 == 0, False]) for k in range(20)]}  # B right on 30 more queries
    mm = compare_runs(a, b, resamples=2000)[0]
    assert (mm.items, mm.only_a, mm.only_b) == (80, 0, 30) and mm.diff == pytest.approx(30 / 80)
    assert mm.ci_low < mm.diff < mm.ci_high and mm.ci_low > 0.25 and mm.ci_high < 0.5
    same = compare_runs(a, a, resamples=500)[0]
    assert (same.diff, same.ci_low, same.ci_high, same.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)


def test_plot_is_written_for_a_small_manifest(tmp_path):
    speech_csv, images_csv = make_toy_data(tmp_path)
    plot = tmp_path / "plot.png"
    assert main(["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--shots", "2", "--episodes", "4",
                 "--queries", "5", "--teachers", "half", "--plot", str(plot), "--quiet", "--speech-encoder", "dtw", "--image-encoder", "pixels"]) == 0
    img = cv2.imread(str(plot))
    assert img is not None and 700 <= img.shape[1] <= 2000 and 600 <= img.shape[0] <= 2000  # 3 episodes of 5 queries and 4 bars
    assert 10_000 < plot.stat().st_size < 2_000_000
    assert (img < 128).any(axis=2).mean() > 0.02  # text, tiles and bars drawn, not a blank page


def test_manifest_paths_are_relative_inside_the_folder_tree_and_absolute_outside(tmp_path, capsys):
    from edge.bench.datasets import fsdd_manifest

    wavs = tmp_path / "corpus" / "fsdd"
    wavs.mkdir(parents=True)
    for name in ("0_ann_0.wav", "1_ann_0.wav", "0_bob_0.wav"):
        write_wav(wavs / name, np.zeros(800), 8000)
    inside, outside = tmp_path / "corpus" / "fsdd.csv", tmp_path / "out" / "deep" / "fsdd.csv"
    assert fsdd_manifest(wavs, inside) == 3 and fsdd_manifest(wavs, outside) == 3
    assert [r["path"] for r in csv.DictReader(inside.open())] == ["fsdd/0_ann_0.wav", "fsdd/0_bob_0.wav", "fsdd/1_ann_0.wav"]
    assert all(Path(r["path"]).is_absolute() for r in csv.DictReader(outside.open()))
    # A manifest moved to another folder keeps finding files outside its tree; one moved with its files keeps finding them.
    moved = tmp_path / "elsewhere" / "fsdd.csv"
    moved.parent.mkdir()
    outside.rename(moved)
    assert all(s.path.is_file() for s in read_speech_manifest(moved))
    (tmp_path / "corpus").rename(tmp_path / "corpus2")
    assert all(s.path.is_file() for s in read_speech_manifest(tmp_path / "corpus2" / "fsdd.csv"))
    assert main(["data", "fsdd", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.csv")]) == 1
    assert f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err
    assert main(["data", "mnist", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) == 1
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert main(["data", "coil20", "--npz", str(tmp_path / "none.npz"), "--out", str(tmp_path / "c")]) == 1
    assert "none.npz: no such file" in capsys.readouterr().err


def test_git_state_outside_a_checkout(tmp_path):
    from edge.bench.results import git_state

    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}
    here = git_state()
    if (Path(edge.__file__).resolve().parent.parent / ".git").exists():
        assert len(here["git_commit"]) == 40 and isinstance(here["git_dirty"], bool)


def test_speech_commands_and_omniglot_manifests_make_a_household_benchmark(tmp_path, capsys):
    """A corpus where each speaker said each word once or not at all: only --teachers half can draw its episodes."""
    root = tmp_path / "speech_commands"
    t = np.arange(int(0.4 * RATE)) / RATE
    ids = ["0a1b2c3d", "11aa22bb", "deadbeef", "cafe0123", "0badf00d", "feed1234"]
    said_by = {"rise": ids[0:4], "fall": ids[2:6], "flat": ids[4:6] + ids[0:2]}  # each speaker said two of the three words
    for w, (f0, f1) in {"rise": (300, 1500), "fall": (1500, 300), "flat": (800, 800)}.items():
        (root / w).mkdir(parents=True)
        for k, spk in enumerate(said_by[w]):
            x = 0.4 * np.sin(2 * np.pi * np.cumsum((1 + 0.05 * k) * (f0 + (f1 - f0) * t / t[-1])) / RATE)
            write_wav(root / w / f"{spk}_nohash_0.wav", x, RATE)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "aaaa0000_nohash_0.wav", np.zeros(800), RATE)
    speech_csv = tmp_path / "sc.csv"
    assert main(["data", "speech-commands", "--root", str(root), "--out", str(speech_csv)]) == 0
    rows = list(csv.DictReader(speech_csv.open()))
    assert len(rows) == 12 and {r["label"] for r in rows} == {"rise", "fall", "flat"} and all(r["path"].startswith("speech_commands/") for r in rows)
    chars = np.ones((5, 3, 105, 105), bool)  # True = paper
    for c in range(5):
        chars[c, :, 20 + 10 * c : 30 + 10 * c, 10:90] = False  # a bar at another height for each character
    labels = np.repeat(np.arange(5)[:, None], 3, axis=1)
    np.savez(tmp_path / "omniglot.npz", images=chars, labels=labels)
    assert main(["data", "omniglot", "--npz", str(tmp_path / "omniglot.npz"), "--labels-from", str(speech_csv), "--out", str(tmp_path / "om")]) == 0
    images = read_image_manifest(tmp_path / "om" / "omniglot.csv")
    assert len(images) == 9 and sorted({i.label for i in images}) == ["fall", "flat", "rise"]
    assert len({i.path.name for i in images}) == 9 and (load_image(images[0].path) > 0).mean() < 0.5  # ink white on black
    capsys.readouterr()
    args = ["bench", "--speech", str(speech_csv), "--images", str(tmp_path / "om" / "omniglot.csv"), "--ways", "3", "--episodes", "5", "--quiet",
            "--speech-encoder", "dtw", "--image-encoder", "pixels"]
    assert main(args) == 1
    assert "one teacher in 100 tries: too few recordings per speaker (try --teachers half)" in capsys.readouterr().err
    out = tmp_path / "half.json"
    assert main([*args, "--teachers", "half", "--json", str(out)]) == 0
    run = json.loads(out.read_text())
    for e in run["per_episode"]:
        assert len({s["speaker"] for s in e["support"]}) >= 2  # nobody said all three words: a household taught them
        assert not {q["speaker"] for q in e["queries"]} & set(e["teaching"])
    np.savez(tmp_path / "few.npz", images=chars[:2], labels=labels[:2])
    assert main(["data", "omniglot", "--npz", str(tmp_path / "few.npz"), "--labels-from", str(speech_csv), "--out", str(tmp_path / "om2")]) == 1
    assert "sc.csv: 3 labels, but" in capsys.readouterr().err


def test_speechocean762_validation_manifest(shared_data, tmp_path):
    from edge.bench.validation import load_heldout

    out = tmp_path / "so.csv"
    assert main(["data", "speechocean762", "--root", str(shared_data / "speechocean762_words"), "--out", str(out)]) == 0
    items = read_speech_manifest(out)
    held = load_heldout()
    assert items and all(it.speaker in held.speakers and it.label in held.words for it in items)
    assert all(it.path.is_file() for it in items[:20]) and all(it.path.suffix == ".flac" for it in items)
    assert main(["data", "speechocean762", "--root", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 1
