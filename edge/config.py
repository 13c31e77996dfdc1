"""The one configuration: a YAML file loaded strictly into frozen dataclasses.

Each subsystem owns its settings dataclass (defaults written there, once); :class:`Config`
gathers them under the YAML's top-level keys. ``load_config`` fails with :class:`ConfigError`
naming the file and the dotted key for anything unknown, mistyped, out of range or missing.
The file itself is read through :mod:`edge.config_file` (regular files of bounded size, YAML of
bounded depth and size, no duplicate keys), by ``check``, ``run`` and the SIGHUP reload alike.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.button import ButtonSettings
from edge.camera import CameraSettings, source_kind
from edge.candidates import CandidateSettings
from edge.config_file import ConfigError, parse_config_yaml, read_config_text
from edge.control import ControlSettings
from edge.daemon import AnswerSettings, TeachSettings, UtteranceSettings
from edge.encoders import SHIPPED_IMAGE, SHIPPED_SPEECH, EncoderSettings
from edge.features import SpeechFeatureSettings
from edge.hearing import COMMAND_PREFIX, MicrophoneSettings
from edge.matching import MatchSettings
from edge.memory import MemorySettings
from edge.service_settings import ServiceSettings
from edge.settings import SettingsError, build, section
from edge.trt_manifest import TensorRTSettings
from edge.vad import VadSettings
from edge.web.server import WebSettings


__all__ = ["Config", "ConfigError", "config_from_mapping", "default_yaml", "load_config"]


@dataclass(frozen=True)
class Config:
    """Everything the runtime can be told, by YAML section."""

    speech_features: SpeechFeatureSettings = section(SpeechFeatureSettings, "how utterances become MFCC frames")
    encoders: EncoderSettings = section(EncoderSettings, "which models embed speech and images, and on what runtime")
    matching: MatchSettings = section(MatchSettings, "rejection thresholds of the matching core")
    microphone: MicrophoneSettings = section(MicrophoneSettings, "which microphone is opened and how its audio is cut into frames")
    vad: VadSettings = section(VadSettings, "how utterances are found in the microphone's audio (webrtcvad endpointer)")
    camera: CameraSettings = section(CameraSettings, "where camera frames come from and how a lost camera is retried")
    candidates: CandidateSettings = section(CandidateSettings, "how object regions are proposed in a camera frame")
    memory: MemorySettings = section(MemorySettings, "where the taught pairs are stored (one SQLite file)")
    control: ControlSettings = section(ControlSettings, "the daemon's control socket (JSON lines), used by the showsay CLI")
    web: WebSettings = section(WebSettings, "the operator's page over HTTP (live view, taught words, teach button, events); off by default, docs/web.md")
    tensorrt: TensorRTSettings = section(TensorRTSettings, "shapes and build options of TensorRT engines (encoders.backend: tensorrt)")
    teach: TeachSettings = section(TeachSettings, "teach mode: a press, then an utterance and the object held up in the teach region")
    utterances: UtteranceSettings = section(UtteranceSettings, "how heard utterances are cut before matching")
    answers: AnswerSettings = section(AnswerSettings, "answering requests: the view searched and the annotated answer images")
    button: ButtonSettings = section(ButtonSettings, "the teach button")
    service: ServiceSettings = section(ServiceSettings, "systemd integration: watchdog, status lines, stop timeout")

    def validate(self) -> None:
        """Rules between sections (each section checks its own values in its validate())."""
        if self.vad.frame_ms != self.microphone.frame_ms:
            raise SettingsError(
                f"vad.frame_ms: must equal microphone.frame_ms ({self.microphone.frame_ms}: the endpointer judges the "
                f"microphone's frames), got {self.vad.frame_ms}"
            )


def config_from_mapping(values: Any, source: str = "config", base_dir: Path | None = None) -> Config:
    """Config from parsed YAML; relative paths (models, state, socket, answers, a camera's video file,
    the TensorRT timing cache) are taken relative to ``base_dir``, the config file's folder."""
    try:
        cfg = build(Config, values)
    except SettingsError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if base_dir is not None:
        cfg = _resolve_paths(cfg, base_dir)
    return cfg


def _resolve_paths(cfg: Config, base_dir: Path) -> Config:
    def resolve(name: str, keywords: set[str]) -> str:
        if name in keywords or Path(name).expanduser().is_absolute():
            return name
        return str((base_dir / name).resolve())

    enc = cfg.encoders
    enc = dataclasses.replace(
        enc,
        speech=resolve(enc.speech, {"dtw", *SHIPPED_SPEECH}),
        image=resolve(enc.image, {"pixels", *SHIPPED_IMAGE}),
    )
    memory = dataclasses.replace(cfg.memory, state_dir=resolve(cfg.memory.state_dir, set()))
    control = dataclasses.replace(cfg.control, socket_path=resolve(cfg.control.socket_path, set()))
    answers = cfg.answers
    if answers.save_dir is not None:
        answers = dataclasses.replace(answers, save_dir=resolve(answers.save_dir, set()))
    camera = cfg.camera
    if source_kind(camera.source) == "file":  # a device index, a URL or a pipeline stays as written
        camera = dataclasses.replace(camera, source=resolve(camera.source, set()))
    tensorrt = dataclasses.replace(cfg.tensorrt, timing_cache_dir=resolve(cfg.tensorrt.timing_cache_dir, set()))
    web = cfg.web
    if web.token_file is not None:
        web = dataclasses.replace(web, token_file=resolve(web.token_file, set()))
    microphone = cfg.microphone
    if microphone.source is not None and not microphone.source.startswith(COMMAND_PREFIX):  # a command stays as written
        microphone = dataclasses.replace(microphone, source=resolve(microphone.source, set()))
    return dataclasses.replace(cfg, encoders=enc, memory=memory, control=control, answers=answers, camera=camera, tensorrt=tensorrt,
                               web=web, microphone=microphone)


def load_config(path: str | os.PathLike | None) -> Config:
    """Load and validate a YAML config file; ``None`` gives the built-in defaults."""
    if path is None:
        return Config()
    path = Path(path)
    values = parse_config_yaml(read_config_text(path), str(path))
    if values is None:  # an empty file (or only comments): every default
        values = {}
    return config_from_mapping(values, str(path), path.parent)


YAML_HEADER = """\
# showsay configuration. Every key is optional: a missing key takes the default shown here.
# Validate with: showsay check --config PATH
# This file is generated from the settings dataclasses (python -m edge.config > config/showsay.yaml);
# a test keeps it in step with them.
"""


def default_yaml() -> str:
    """The shipped YAML: every key with its default and a comment giving its meaning and unit."""
    from edge.settings import render_yaml

    return YAML_HEADER + "\n" + render_yaml(Config)


if __name__ == "__main__":
    print(default_yaml(), end="")
