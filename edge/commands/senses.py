"""``showsay listen`` and ``showsay look``: bring-up checks of the microphone, endpointer, camera and finder.

``listen`` prints one line per utterance the endpointer finds (from the configured microphone or a
wav file) and can save each as a wav; ``--devices`` lists the input devices. ``look`` grabs one
frame (from an image file or the configured camera), runs the configured candidate finder, prints
the boxes as JSON and can write an annotated copy. Both use the same objects the daemon uses.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from edge.audio import AudioError, write_wav
from edge.config import ConfigError, load_config

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands."""
    p = sub.add_parser("listen", help="print the utterances heard on the microphone (or in a wav file)")
    p.add_argument("--config", help="YAML config (microphone and vad sections); default: built-in defaults")
    p.add_argument("--wav", help="read this wav file instead of the microphone")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long, s (0 = until Ctrl-C or end of file)")
    p.add_argument("--save-dir", help="write each utterance to this directory as utt_NNN.wav")
    p.add_argument("--devices", action="store_true", help="list the audio input devices and exit")
    p.set_defaults(func=run_listen)

    p = sub.add_parser("look", help="find candidate objects in an image or a camera frame")
    p.add_argument("--config", help="YAML config (camera and candidates sections); default: built-in defaults")
    p.add_argument("--image", help="use this image file instead of the camera")
    p.add_argument("--finder", choices=("center", "grid", "contours"), help="override candidates.finder")
    p.add_argument("--out", help="write the frame with the candidate boxes drawn to this png")
    p.add_argument("--timeout", type=float, default=10.0, help="how long to wait for a camera frame, s")
    p.set_defaults(func=run_look)


def run_listen(args: argparse.Namespace) -> int:
    """Endpoint the microphone or a wav file; one line per utterance."""
    from edge.hearing import AudioDeviceError, MicrophoneSource, WavFileSource
    from edge.vad import Endpointer

    if args.devices:
        from edge.hearing import _import_sounddevice

        try:
            print(_import_sounddevice().query_devices())
        except AudioDeviceError as exc:
            print(f"showsay listen: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        cfg = load_config(args.config)
        if cfg.vad.frame_ms != cfg.microphone.frame_ms:
            raise ConfigError(f"{args.config}: vad.frame_ms ({cfg.vad.frame_ms}) must equal microphone.frame_ms ({cfg.microphone.frame_ms})")
        if args.wav:
            source = WavFileSource(args.wav, frame_ms=cfg.vad.frame_ms, start_time_s=0.0)
        else:
            # an interactive check: a microphone that cannot be opened is an error, not waited for
            source = MicrophoneSource(dataclasses.replace(cfg.microphone, wait_for_device=False))
    except (ConfigError, AudioError, AudioDeviceError) as exc:
        print(f"showsay listen: {exc}", file=sys.stderr)
        return 1
    save_dir = Path(args.save_dir) if args.save_dir else None
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    endpointer = Endpointer(cfg.vad)
    t0 = time.monotonic()
    count = 0
    try:
        for utterance in _until(endpointer.segment(source), source, args.seconds, t0):
            count += 1
            line = {"utterance": count, "start_s": round(utterance.start_s - (0 if args.wav else t0), 3),
                    "end_s": round(utterance.end_s - (0 if args.wav else t0), 3), "duration_ms": round(utterance.duration_ms)}
            if save_dir:
                path = save_dir / f"utt_{count:03d}.wav"
                write_wav(path, utterance.pcm, utterance.sample_rate_hz)
                line["wav"] = str(path)
            print(json.dumps(line), flush=True)
    except KeyboardInterrupt:
        pass
    except AudioDeviceError as exc:
        print(f"showsay listen: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()
    log.info("%d utterance(s); %d dropped as too short, %d as too long; %d audio block(s) dropped",
             count, endpointer.dropped_short, endpointer.dropped_long, source.dropped_frames)
    return 0


def _until(utterances, source, seconds: float, t0: float):
    """Stop the stream after ``seconds`` (0: never) by closing the source, which ends segment()."""
    if seconds > 0:
        import threading

        timer = threading.Timer(max(0.0, seconds - (time.monotonic() - t0)), source.close)
        timer.daemon = True
        timer.start()
    yield from utterances


def run_look(args: argparse.Namespace) -> int:
    """Candidates of one frame as JSON lines; optionally an annotated png."""
    import dataclasses

    import cv2

    from edge.camera import Camera, CameraError
    from edge.candidates import make_finder
    from edge.images import ImageError, load_image

    try:
        cfg = load_config(args.config)
        settings = cfg.candidates if not args.finder else dataclasses.replace(cfg.candidates, finder=args.finder)
        if args.image:
            image = load_image(args.image)
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        else:
            with Camera(cfg.camera) as camera:
                frame = camera.wait_newer(-1, args.timeout)
            if frame is None:
                raise CameraError(f"camera.source {cfg.camera.source!r}: no frame within {args.timeout} s")
            image = frame.image
    except (ConfigError, ImageError, CameraError) as exc:
        print(f"showsay look: {exc}", file=sys.stderr)
        return 1
    t = time.perf_counter()
    candidates = make_finder(settings).find(image)
    elapsed_ms = 1000 * (time.perf_counter() - t)
    for i, c in enumerate(candidates):
        print(json.dumps({"candidate": i, "box": list(c.box)}))
    log.info("%d candidate(s) from the %s finder in %.1f ms on a %dx%d frame", len(candidates), settings.finder, elapsed_ms, image.shape[1], image.shape[0])
    if args.out:
        vis = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        for i, c in enumerate(candidates):
            x, y, w, h = c.box
            cv2.rectangle(vis, (x, y), (x + w - 1, y + h - 1), (0, 0, 255), 2)
            cv2.putText(vis, str(i), (x + 3, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
        if not cv2.imwrite(args.out, vis):
            print(f"showsay look: cannot write {args.out}", file=sys.stderr)
            return 1
    return 0
