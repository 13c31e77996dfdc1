"""The controller: one thread that hears utterances, watches the view, learns pairs and answers.

States: ``idle`` (every utterance is a request) and ``teaching`` (a press started it; the next
utterance plus the object in the teach region become a pair; a second press, the ``cancel``
command or the timeout ends it). Capture threads (microphone, camera, button, control socket)
only feed this thread; it alone touches the encoders, the support set and the memory, so no
locks guard them.

Two choices keep the answer fast and the taught image good:

* Candidate embeddings are computed per camera frame *while the person is still speaking*
  (the audio level says someone is) and cached by frame, so when the endpointer closes the
  utterance the heavy image encoder has usually already run: the critical path is features,
  speech embedding and the match.
* While teaching, the object in the teach region (the finder's candidate centred there, so it is
  framed like the candidates it will be compared with; else the region itself) is cropped from
  several frames (``teach.frames_to_sample``, one every ``teach.sample_interval_ms``) and the
  *sharpest* crop taken during the utterance (variance of the Laplacian) is kept. People hold an object still while they name it, and motion
  blur is what ruins a one-shot image; averaging embeddings of several frames would blend blurred
  and misaligned views, and could not be stored as one real crop for later re-embedding.
* A person teaching turns the object in hand, and one crop throws the other sides away: with
  ``teach.views`` > 1 the teacher is asked to turn the object while naming it (event
  ``turn_object``, a tone with ``teach.sound``), every crop sampled while the word is said is embedded
  as it is taken (so not on the teach step), and up to ``teach.views`` crops taken during
  the utterance are stored with the pair: the sharpest, then again and again the sharp-enough crop
  farthest in embedding space from those already kept (:func:`choose_views`). A candidate's image
  distance is the minimum over every view of the word.
* An answer that the person confirms (``confirm`` command, or the teach button pressed within
  ``teach.confirm_window_s`` of a ``resolved`` event) can add the chosen candidate's crop as a
  learned view of the word (``teach.learn_confirmed``), at most ``teach.learned_views_per_word``
  per word, the oldest dropped first; taught views are never dropped. ``wrong`` removes nothing
  and publishes the miss (``answer_wrong``).
"""
from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from math import ceil
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from edge.audio import REQUEST_RATES_HZ, AudioError, read_request_audio, resample, to_float
from edge.encoders import ImageEncoder, SpeechEncoder, embed_crops, embed_with_mirror, mirror_id, mirrored, support_set_for
from edge.features import SpeechFeatureSettings, warped_speech_features
from edge.fileio import write_atomic
from edge.matching import CandidateDistances, MatchSettings, Resolution, l2_normalise
from edge.memory import MAX_LABEL_CHARS
from edge.settings import setting
from edge.vad import VadSettings

log = logging.getLogger(__name__)

Event = dict[str, Any]


@dataclass(frozen=True)
class TeachSettings:
    """How a press, an utterance and the object held up become a taught pair."""

    timeout_s: float = setting(8.0, "teach mode ends (teach_cancelled, reason timeout) when no utterance starts within this many seconds of the press", min=1.0, max=120.0)
    frames_to_sample: int = setting(8, "teach-region crops kept while waiting for the utterance; the sharpest taken during it is stored", min=1, max=64)
    sample_interval_ms: float = setting(120.0, "least time between two sampled teach-region crops, ms", min=0.0, max=2000.0)
    sound: bool = setting(False, "play short tones on the default output device when teaching starts, succeeds or is cancelled")
    views: int = setting(
        5,
        "crops of the object kept per taught pair while the teacher turns it and names it: the sharpest crop taken during "
        "the word, then in turn the sharp crop farthest from those kept (embedding space); 1 keeps the sharpest alone. "
        "Chosen on Omniglot (drawers as views) and by cost, not on COIL-20 (docs/objects.md); at most frames_to_sample",
        min=1, max=16,
    )
    view_min_sharpness: float = setting(0.5, "a further view must be at least this fraction as sharp as the sharpest crop (motion blur while turning)", min=0.0, max=1.0)
    view_min_distance: float = setting(
        0.02, "a crop nearer than this (cosine distance) to a view already kept adds nothing and is not stored (the object was not turned)", min=0.0, max=2.0,
    )
    mirror_views: bool = setting(
        False,
        "also store each kept view flipped left-right (embedded with it as the crop is taken) and match against it too: "
        "a mirrored view of a turned object resembles it turned the other way. Off: on rendered turntable objects it gained "
        "0.3-0.6 points, under the 1 point a costlier default must gain, for twice the image rows in RAM and twice the "
        "prefetch work (docs/objects.md); never for handwriting or symbols (a mirrored character is another one)",
    )
    learn_confirmed: bool = setting(
        False, "a confirmed answer (confirm command, or the teach button within confirm_window_s of the answer) adds the chosen crop as a view of the word",
    )
    learned_views_per_word: int = setting(4, "most views learned from confirmed answers kept per word; the oldest is dropped first (taught views never)", min=1, max=100)
    confirm_window_s: float = setting(5.0, "an answer can be confirmed or marked wrong this many seconds after it was given", min=0.5, max=600.0)


@dataclass(frozen=True)
class UtteranceSettings:
    """How an endpointed utterance (taught or asked) is cut before its features are computed."""

    trim_below_peak_db: float | None = setting(
        40.0, "drop leading and trailing 10 ms frames quieter than the loudest by more than this, dB (null keeps the endpointer's pre- and post-roll)",
        min=10.0, max=120.0,
    )


def trim_to_speech(samples: np.ndarray, sample_rate_hz: int, below_peak_db: float | None) -> np.ndarray:
    """``samples`` without the quiet lead-in and tail (10 ms frames ``below_peak_db`` under the loudest).

    The endpointer keeps pre- and post-roll so soft onsets survive; for matching, the silence or room
    noise around the word only adds frames DTW and encoders must align, and how much of it there is
    depends on the room, not the word (measured: a word repeated over digital silence was at DTW cost
    0.05, over -66 dBFS noise at 0.36; both 0.07-0.10 once trimmed).
    """
    if below_peak_db is None:
        return samples
    hop = max(1, sample_rate_hz // 100)
    n = samples.size // hop
    if n < 3:
        return samples
    energy_db = 10.0 * np.log10(np.mean(np.square(samples[: n * hop].reshape(n, hop)), axis=1) + 1e-12)
    keep = np.flatnonzero(energy_db > energy_db.max() - below_peak_db)
    return samples[keep[0] * hop : (keep[-1] + 1) * hop]


@dataclass(frozen=True)
class AnswerSettings:
    """How requests are answered: which frames count as the view, and saved answer images."""

    save_dir: str | None = setting(None, "directory for annotated JPEGs of answers (box and label); null saves none")
    max_saved_images: int = setting(500, "oldest answer images are deleted beyond this many", min=1, max=1_000_000)
    jpeg_quality: int = setting(90, "quality of saved answer images (1-100)", min=1, max=100)
    recent_view_s: float = setting(0.0, "when the word's object is not in view, also search candidates seen this many seconds back (0 = current view only)", min=0.0, max=600.0)
    recent_view_interval_s: float = setting(1.0, "with recent_view_s > 0: embed the view at least this often even in silence, s", min=0.1, max=60.0)
    reuse_view_ms: float = setting(600.0, "answer with candidate embeddings cached for a frame at most this much older than the newest frame, ms", min=0.0, max=10_000.0)
    prefetch_interval_ms: float = setting(200.0, "least time between two ahead-of-time candidate embeddings while speaking, ms", min=0.0, max=5000.0)
    audio_lost_s: float = setting(3.0, "no audio frame for this long is reported as device_lost (microphone)", min=0.5, max=60.0)
    max_frame_age_s: float = setting(
        2.0, "a camera frame older than this is never used to teach or answer, and a camera delivering none newer is reported as device_lost, s "
        "(keep it above 1/camera.fps)", min=0.1, max=600.0,
    )
    ask_read_timeout_s: float = setting(2.0, "longest the daemon spends reading the audio file of an ask request, s (then it is refused)", min=0.1, max=60.0)


# --- the narrow interfaces the controller uses (implemented in edge.hearing/vad/camera/candidates/memory)


class AudioSourceLike(Protocol):
    closed: bool
    dropped_frames: int

    def read(self, timeout_s: float) -> Any: ...


class EndpointerLike(Protocol):
    in_speech: bool  # an utterance is in progress (its end not yet found)

    def push(self, frame: Any) -> Any: ...

    def flush(self) -> Any: ...


class FrameSourceLike(Protocol):
    connected: bool

    def latest(self) -> Any: ...


class FinderLike(Protocol):
    def find(self, image: np.ndarray) -> list[Any]: ...


class MemoryLike(Protocol):
    def teach(self, audio_pcm: np.ndarray, sample_rate_hz: int, crop: np.ndarray, label: str | None = None, embeddings: dict | None = None,
              views: Any = ()) -> int: ...

    def add_view(self, pair_id: int, crop: np.ndarray, embeddings: dict | None = None, *, source: str = "learned",
                 max_learned: int | None = None, word_pair_ids: Any = None) -> tuple[int, list[int]]: ...

    def view_embeddings(self, encoder_id: str) -> dict[int, np.ndarray]: ...

    def set_view_embedding(self, view_id: int, encoder_id: str, vector: np.ndarray) -> None: ...

    def pairs(self) -> list[Any]: ...

    def embeddings(self, encoder_id: str) -> dict[int, np.ndarray]: ...

    def set_embedding(self, pair_id: int, encoder_id: str, vector: np.ndarray) -> None: ...

    def forget(self, pair_id: int) -> bool: ...

    def label(self, pair_id: int, text: str | None) -> None: ...


@dataclass
class View:
    """The candidates of one camera frame and their image embeddings."""

    frame: Any  # edge.camera.Frame
    candidates: list  # edge.candidates.Candidate
    embeddings: np.ndarray  # (C, E)
    distances: CandidateDistances | None = None  # mutual exclusivity's request-independent part, computed with the embeddings


@dataclass
class TeachSample:
    """One teach-region crop taken while teaching."""

    frame: Any
    candidate: Any
    sharpness: float
    embedding: np.ndarray | None = None  # (E,), when several views are kept (embedded as it is taken)
    mirror: np.ndarray | None = None  # (E,) of the crop flipped left-right, embedded with it (teach.mirror_views)


@dataclass
class Answer:
    """The last resolved answer, until it is confirmed, marked wrong or too old."""

    time_s: float
    pair_id: int
    label: str | None
    box: list[int]
    crop: np.ndarray
    embedding: np.ndarray  # (E,)
    image_distance: float


def choose_views(samples: list[TeachSample], first: TeachSample, n: int, min_sharpness: float, min_distance: float) -> list[TeachSample]:
    """``first`` and up to ``n`` - 1 more of ``samples``: each time the one farthest from those chosen (cosine distance of
    the embeddings, the minimum over the chosen), among those at least ``min_sharpness`` times as sharp as ``first``;
    none nearer than ``min_distance`` to a chosen one (a crop of the object not turned adds nothing)."""
    chosen = [first]
    if n <= 1 or first.embedding is None:
        return chosen
    pool = [s for s in samples if s is not first and s.embedding is not None and s.sharpness >= min_sharpness * first.sharpness]
    if not pool:
        return chosen
    emb = l2_normalise(np.stack([s.embedding for s in pool]).reshape(len(pool), -1))  # (P, E) unit rows
    nearest = 1.0 - emb @ l2_normalise(first.embedding.reshape(-1))  # (P,) distance to the nearest chosen view
    while len(chosen) < n:
        k = int(np.argmax(nearest))
        if nearest[k] < min_distance:
            break
        chosen.append(pool[k])
        nearest = np.minimum(nearest, 1.0 - emb @ emb[k])
        nearest[k] = -np.inf
    return chosen


@dataclass
class _Pending:
    """A control request waiting for the controller thread's reply."""

    request: dict
    audio: tuple[np.ndarray, int] | None = None  # an ask request's audio, read on the caller's thread
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict | None = None


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: higher is sharper (less motion blur)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


class Controller:
    """The state machine; run :meth:`run` in its own thread, feed it with :meth:`press` and :meth:`request`."""

    def __init__(
        self,
        *,
        speech_encoder: SpeechEncoder,
        image_encoder: ImageEncoder,
        feature_settings: SpeechFeatureSettings,
        memory: MemoryLike,
        audio: AudioSourceLike,
        endpointer: EndpointerLike,
        frames: FrameSourceLike,
        finder: FinderLike,
        teach_region: Callable[[np.ndarray], Any],
        teach: TeachSettings = TeachSettings(),
        answers: AnswerSettings = AnswerSettings(),
        utterances: UtteranceSettings = UtteranceSettings(),
        matching: MatchSettings = MatchSettings(),
        vad: VadSettings = VadSettings(),
        publish: Callable[[Event], None] = lambda e: None,
        heartbeat: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.speech_encoder = speech_encoder
        self.image_encoder = image_encoder
        self.feature_settings = feature_settings
        self.memory = memory
        self.audio = audio
        self.endpointer = endpointer
        self.frames = frames
        self.finder = finder
        self.teach_region = teach_region
        self.teach_settings = teach
        self.answers = answers
        self.utterances = utterances
        self.matching = self.with_encoder_thresholds(matching)
        # an ask file may hold as much audio as the longest utterance the endpointer passes on
        self.max_request_ms = float(vad.max_utterance_ms + vad.pre_roll_ms + vad.post_roll_ms)
        self._ask_reads = threading.Semaphore(1)  # one request file decoded at a time bounds the memory it takes
        self._publish_sink = publish
        self._heartbeat = heartbeat
        self._clock = clock

        self.support = support_set_for(speech_encoder)
        self.state = "idle"
        self._teach_deadline = 0.0
        self._teach_samples: deque[TeachSample] = deque(maxlen=teach.frames_to_sample)
        self._last_sample_s = -1e9
        self._views: deque[View] = deque(maxlen=256)
        self._last_prefetch_s = -1e9
        self._speech_seen_s = -1e9
        self._speculative: tuple[tuple, tuple] | None = None  # (utterance key, speech side) computed at the first pause
        self._teach_label: str | None = None
        self._devices_lost: set[str] = set()
        self._last_frame_index: int | None = None
        self._last_audio_s = clock()
        self._camera_seen = False
        self._publish_lock = threading.Lock()
        self._commands: queue.Queue = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._audio_drained = False
        self.finished = threading.Event()
        self._saved: deque[Path] = deque()
        self._last_answer: Answer | None = None
        self.counts = {"utterances": 0, "requests": 0, "resolved": 0, "taught": 0, "errors": 0, "confirmed": 0, "wrong": 0}
        self.started_s = clock()

    # ------------------------------------------------------------------ inputs from other threads

    def press(self, source: str = "button") -> None:
        """A teach-button press (GPIO, keyboard or the socket): starts or cancels teach mode."""
        try:
            self._commands.put_nowait(("press", source))
        except queue.Full:
            log.warning("controller busy: teach press from %s dropped", source)
        self._wake()

    def request(self, request: dict, timeout_s: float = 10.0) -> dict:
        """Run a control command on the controller thread and return its reply (an error after ``timeout_s``).

        An ``ask`` request's audio is read and checked here, on the caller's thread, so a slow,
        hostile or oversized file never holds up the controller.
        """
        pending = _Pending(request)
        if request.get("cmd") == "ask":
            try:
                pending.audio = self._ask_audio(request, timeout_s)
            except (AudioError, ValueError) as exc:
                return {"ok": False, "error": str(exc)}
        try:
            self._commands.put(("request", pending), timeout=timeout_s)
        except queue.Full:
            return {"ok": False, "error": "daemon busy: command queue full"}
        self._wake()
        if not pending.done.wait(timeout_s):
            return {"ok": False, "error": f"no reply from the controller within {timeout_s:g} s"}
        return pending.reply or {"ok": False, "error": "no reply"}

    def _ask_audio(self, request: dict, timeout_s: float) -> tuple[np.ndarray, int]:
        """The int16 audio of an ask request, within the request limits; one file at a time."""
        if not self._ask_reads.acquire(timeout=timeout_s):
            raise AudioError(f"daemon busy: another ask request's audio is still being read after {timeout_s:g} s")
        try:
            return _request_audio(request, self.max_request_ms, self.answers.ask_read_timeout_s)
        finally:
            self._ask_reads.release()

    def _wake(self) -> None:
        """Cut the loop's wait for audio short so a command is run now, not on the next audio frame."""
        wake = getattr(self.audio, "wake", None)
        if wake is not None:
            wake()

    def with_encoder_thresholds(self, matching: MatchSettings) -> MatchSettings:
        """``matching`` with ``unknown_word_distance: encoder`` replaced by the value measured for the speech encoder."""
        if matching.unknown_word_distance != "encoder":
            return matching
        measured = getattr(self.speech_encoder, "unknown_word_distance", None)
        if measured is None:
            log.warning("matching.unknown_word_distance 'encoder': no threshold was measured for speech encoder %s, so every "
                        "request is answered; set a number (tools/thresholds.py measures one)", self.speech_encoder.encoder_id)
        return replace(matching, unknown_word_distance=measured)

    def set_matching(self, matching: MatchSettings) -> None:
        """New rejection thresholds (SIGHUP), applied on the controller thread."""
        try:
            self._commands.put(("matching", matching), timeout=5.0)
        except queue.Full:
            log.error("controller busy: new matching thresholds not applied")

    def stop(self) -> None:
        """Ask the loop to end after the current step."""
        self._stop.set()

    # ------------------------------------------------------------------ start-up

    def load_memory(self, progress: Callable[[int, int], None] = lambda done, total: None) -> int:
        """Fill the support set from memory, re-embedding pairs stored under other encoders; returns the pair count.

        ``progress(done, total)`` is called during re-embedding (it can take minutes for thousands of
        pairs with a heavy encoder; the service extends systemd's start timeout from it).
        """
        pairs = self.memory.pairs()
        if not pairs:
            return 0
        sid, iid = self.speech_encoder.encoder_id, self.image_encoder.encoder_id
        speech = self.memory.embeddings(sid)
        images = self.memory.embeddings(iid)
        missing_s = [p for p in pairs if p.pair_id not in speech]
        missing_i = [p for p in pairs if p.pair_id not in images]
        if missing_s or missing_i:
            log.info("re-embedding %d utterances (%s) and %d crops (%s) from stored raw data", len(missing_s), sid, len(missing_i), iid)
        total = len(missing_s) + len(missing_i)
        for i, p in enumerate(missing_s):
            progress(i, total)
            try:
                vec = self.embed_speech(p.audio_pcm, p.sample_rate_hz)
            except Exception as exc:  # a pair that cannot be re-embedded stays stored, unused, and is reported
                log.error("pair %d: cannot re-embed its audio (%s); left out of matching", p.pair_id, exc)
                continue
            self.memory.set_embedding(p.pair_id, sid, vec)
            speech[p.pair_id] = vec
        for i, p in enumerate(missing_i):
            progress(len(missing_s) + i, total)
            try:
                vec = embed_crops(self.image_encoder, [p.crop])[0]
            except Exception as exc:
                log.error("pair %d: cannot re-embed its crop (%s); left out of matching", p.pair_id, exc)
                continue
            self.memory.set_embedding(p.pair_id, iid, vec)
            images[p.pair_id] = vec
        usable = [p for p in pairs if p.pair_id in speech and p.pair_id in images]
        mirrors = self._load_mirrors(usable, self.memory.embeddings, self.memory.set_embedding, "pair_id", "pair") if self.teach_settings.mirror_views else {}
        for p in usable:
            both = [images[p.pair_id], mirrors[p.pair_id]] if p.pair_id in mirrors else [images[p.pair_id]]
            self.support.add(p.pair_id, speech[p.pair_id], np.stack([np.asarray(v, np.float32).reshape(-1) for v in both]), p.label)
        self._load_views(usable)
        return len(usable)

    def _load_mirrors(self, items: list[Any], stored: Callable, store: Callable, id_field: str, what: str) -> dict[int, np.ndarray]:
        """id -> the embedding of each item's crop flipped left-right; those not stored yet are made and stored."""
        key = mirror_id(self.image_encoder.encoder_id)
        vectors = stored(key)
        missing = [it for it in items if getattr(it, id_field) not in vectors]
        if missing:
            log.info("embedding %d mirrored %s crops (%s)", len(missing), what, key)
        for it in missing:
            item_id = getattr(it, id_field)
            try:
                vectors[item_id] = embed_crops(self.image_encoder, [mirrored(it.crop)])[0]
            except Exception as exc:
                log.error("%s %d: cannot embed its mirrored crop (%s); matched without it", what, item_id, exc)
                continue
            store(item_id, key, vectors[item_id])
        return vectors

    def _load_views(self, pairs: list[Any]) -> None:
        """Add every further view of these pairs to the support set, embedding those stored under another image encoder."""
        views = [v for p in pairs for v in getattr(p, "views", ())]
        if not views:
            return
        iid = self.image_encoder.encoder_id
        vectors = self.memory.view_embeddings(iid)
        missing = [v for v in views if v.view_id not in vectors]
        if missing:
            log.info("re-embedding %d further views (%s) from stored crops", len(missing), iid)
        for v in missing:
            try:
                vectors[v.view_id] = embed_crops(self.image_encoder, [v.crop])[0]
            except Exception as exc:
                log.error("view %d of pair %d: cannot re-embed its crop (%s); left out of matching", v.view_id, v.pair_id, exc)
                continue
            self.memory.set_view_embedding(v.view_id, iid, vectors[v.view_id])
        usable = [v for v in views if v.view_id in vectors]
        mirrors = self._load_mirrors(usable, self.memory.view_embeddings, self.memory.set_view_embedding, "view_id", "view") if self.teach_settings.mirror_views else {}
        for v in usable:
            both = [vectors[v.view_id], mirrors[v.view_id]] if v.view_id in mirrors else [vectors[v.view_id]]
            self.support.add_view(v.pair_id, np.stack([np.asarray(x, np.float32).reshape(-1) for x in both]), key=v.view_id)  # dropped together

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """The controller loop: until :meth:`stop`, or until a finite audio source is exhausted."""
        try:
            while not self._stop.is_set():
                self.step()
                if self.audio.closed and self._audio_drained:
                    log.info("audio source exhausted: controller stops")
                    break
        finally:
            self.finished.set()

    def step(self, read_timeout_s: float = 0.05) -> None:
        """One iteration: read audio, endpoint, run commands, watch the camera, check the teach timeout."""
        try:
            frame = self.audio.read(read_timeout_s)
            now = self._clock()
            if frame is None:
                if self.audio.closed:
                    utt = self.endpointer.flush()
                    if utt is not None:
                        self._on_utterance(utt)
                    self._audio_drained = True
                elif "microphone" not in self._devices_lost and now - self._last_audio_s > self.answers.audio_lost_s:
                    self.publish({"event": "device_lost", "device": "microphone", "reason": f"no audio for {self.answers.audio_lost_s:g} s"})
            else:
                self._last_audio_s = now
                if "microphone" in self._devices_lost:
                    self.publish({"event": "device_recovered", "device": "microphone"})
                utt = self.endpointer.push(frame)
                if self.endpointer.in_speech:
                    self._speech_seen_s = now
                if utt is not None:
                    self._on_utterance(utt)
                elif self.state == "idle":
                    self._speculate()
            self._run_commands()
            self._watch_camera(self._clock())
            self._check_teach_timeout(self._clock())
        except Exception as exc:  # one bad step must never end the daemon
            self.counts["errors"] += 1
            log.exception("controller step failed")
            self.publish({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        self._heartbeat()

    def _speaking(self, now: float) -> bool:
        """Someone is (or was a moment ago) speaking: the endpointer has an utterance open."""
        return now - self._speech_seen_s < 0.1

    # ------------------------------------------------------------------ commands

    def _run_commands(self) -> None:
        while True:
            try:
                kind, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "press":
                self._on_press(arg)
            elif kind == "matching":
                self.matching = self.with_encoder_thresholds(arg)
                log.info("matching thresholds now %s", self.matching)
            elif kind == "request":
                try:
                    arg.reply = self._handle(arg.request, arg.audio)
                except Exception as exc:
                    log.exception("control command %r failed", arg.request.get("cmd"))
                    arg.reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                arg.done.set()

    def _handle(self, req: dict, audio: tuple[np.ndarray, int] | None = None) -> dict:
        cmd = req.get("cmd")
        if cmd == "teach":
            label = req.get("label")
            if label is not None and (not isinstance(label, str) or not label.strip()):
                return {"ok": False, "error": f"label must be a non-empty string, got {label!r}"}
            if label is not None and len(label.strip()) > MAX_LABEL_CHARS:  # refused now, not after the person has spoken
                return {"ok": False, "error": f"label: at most {MAX_LABEL_CHARS} characters, got {len(label.strip())}"}
            self._on_press("socket", label)
            return {"ok": True, "state": self.state}
        if cmd == "cancel":
            if self.state != "teaching":
                return {"ok": False, "error": "not teaching", "state": self.state}
            self._cancel_teach("cancelled")
            return {"ok": True, "state": self.state}
        if cmd == "status":
            return {"ok": True, **self.status()}
        if cmd == "list":
            return {"ok": True, "pairs": [
                {"pair_id": p.pair_id, "label": p.label, "created_unix": p.created_unix} for p in self.memory.pairs()
            ]}
        if cmd == "forget":
            pair_id = _pair_id(req)
            if not self.memory.forget(pair_id):
                return {"ok": False, "error": f"no pair {pair_id}"}
            if pair_id in self.support.ids:
                self.support.remove(pair_id)
            self.publish({"event": "forgotten", "pair_id": pair_id})
            return {"ok": True, "pair_id": pair_id}
        if cmd == "label":
            pair_id = _pair_id(req)
            text = req.get("label", req.get("text"))
            if text is not None and (not isinstance(text, str) or not text.strip()):
                return {"ok": False, "error": f"label must be a non-empty string or null, got {text!r}"}
            if pair_id not in self.support.ids:
                return {"ok": False, "error": f"no pair {pair_id}"}
            self.memory.label(pair_id, text)
            self.support.relabel(pair_id, text)
            self.publish({"event": "labelled", "pair_id": pair_id, "label": text})
            return {"ok": True, "pair_id": pair_id, "label": text}
        if cmd == "ask":
            pcm, rate = audio if audio is not None else _request_audio(req, self.max_request_ms, self.answers.ask_read_timeout_s)
            return {"ok": True, **self.answer(pcm, rate)}
        if cmd in ("confirm", "wrong"):
            event = self._on_feedback(cmd, "socket")
            return {"ok": False, "error": event["error"]} if "error" in event else {"ok": True, **event}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def status(self) -> dict:
        """What the daemon is doing, for the status command and STATUS= lines."""
        latest = self.frames.latest()
        return {
            "state": self.state,
            "pairs": len(self.support),
            "speech_encoder": self.speech_encoder.encoder_id,
            "image_encoder": self.image_encoder.encoder_id,
            "camera_connected": bool(getattr(self.frames, "connected", latest is not None)),
            "microphone_connected": bool(getattr(self.audio, "connected", not getattr(self.audio, "closed", False))),
            "devices_lost": sorted(self._devices_lost),
            "dropped_audio_frames": int(getattr(self.audio, "dropped_frames", 0)),
            "uptime_s": round(self._clock() - self.started_s, 1),
            **self.counts,
        }

    # ------------------------------------------------------------------ teaching

    def _on_press(self, source: str, label: str | None = None) -> None:
        if self.state == "teaching":
            self._cancel_teach("second_press")
            return
        if source != "socket" and self.teach_settings.learn_confirmed and self._answer_to_judge() is not None:
            self._on_feedback("confirm", source)  # the button right after an answer says "yes, that one"
            return
        self.state = "teaching"
        self._end_silence_for_state()
        self._teach_label = label
        self._teach_deadline = self._clock() + self.teach_settings.timeout_s
        self._teach_samples.clear()
        self._last_sample_s = -1e9
        self.publish({"event": "teach_started", "source": source, "label": label, "timeout_s": self.teach_settings.timeout_s})
        if self.teach_settings.views > 1:
            self.publish({"event": "turn_object", "views": self.teach_settings.views,
                          "prompt": "hold the object in the middle and turn it slowly while you say its name"})

    # ------------------------------------------------------------------ feedback on answers

    def _answer_to_judge(self) -> Answer | None:
        """The last resolved answer, if it is recent enough to be confirmed or marked wrong."""
        a = self._last_answer
        if a is None or self._clock() - a.time_s > self.teach_settings.confirm_window_s:
            return None
        return a

    def _on_feedback(self, kind: str, source: str) -> Event:
        """``confirm`` or ``wrong`` for the last answer: publishes ``confirmed`` / ``answer_wrong`` (or returns an error)."""
        a = self._answer_to_judge()
        if a is None:
            return {"error": f"no answer to {kind}: none resolved in the last {self.teach_settings.confirm_window_s:g} s"}
        self._last_answer = None  # one verdict per answer
        about = {"source": source, "pair_id": a.pair_id, "label": a.label, "box": a.box, "image_distance": _round(a.image_distance),
                 "answer_age_s": round(self._clock() - a.time_s, 2)}
        if kind == "wrong":
            self.counts["wrong"] += 1
            log.warning("answer marked wrong: pair %s (%s) at %s, image distance %.4f", a.pair_id, a.label, a.box, a.image_distance)
            return self.publish({"event": "answer_wrong", **about})
        self.counts["confirmed"] += 1
        learned: Event = {"learned": False}
        if self.teach_settings.learn_confirmed and a.pair_id in self.support.ids:
            learned = self._learn_view(a)
        return self.publish({"event": "confirmed", **about, **learned})

    def _learn_view(self, a: Answer) -> Event:
        """Store the confirmed crop as a learned view of the word (bounded per word), then match with it."""
        word = [self.support.ids[r] for r in self.support.word_rows(self.support.ids.index(a.pair_id))]
        iid = self.image_encoder.encoder_id
        embs = {iid: a.embedding}
        if self.teach_settings.mirror_views:
            embs[mirror_id(iid)] = embed_crops(self.image_encoder, [mirrored(a.crop)])[0]
        view_id, dropped = self.memory.add_view(
            a.pair_id, a.crop, embs, source="learned",
            max_learned=self.teach_settings.learned_views_per_word, word_pair_ids=word,
        )  # committed before the support set changes
        self.support.add_view(a.pair_id, np.stack([np.asarray(v, np.float32).reshape(-1) for v in embs.values()]), key=view_id)  # with its mirror
        for v in dropped:
            self.support.remove_view(v)
        views = self.support.view_count(a.pair_id) // (2 if self.teach_settings.mirror_views else 1)
        return {"learned": True, "view_id": view_id, "dropped_view_ids": dropped, "views": views}

    def _end_silence_for_state(self) -> None:
        """Teaching waits longer for the end of the utterance (``vad.teach_end_silence_ms``): a name must be kept whole."""
        settings, set_ms = getattr(self.endpointer, "settings", None), getattr(self.endpointer, "set_end_silence_ms", None)
        if settings is not None and set_ms is not None:
            set_ms(settings.teach_end_silence_ms if self.state == "teaching" else settings.end_silence_ms)

    def _cancel_teach(self, reason: str, **details: Any) -> None:
        self.state = "idle"
        self._end_silence_for_state()
        self._teach_samples.clear()
        self.publish({"event": "teach_cancelled", "reason": reason, **details})

    def _stale_frame_age_s(self) -> float | None:
        """Age of the newest camera frame when it is older than ``answers.max_frame_age_s`` (a camera that stopped delivering), else None."""
        if getattr(self.frames, "still", False):  # a still picture (StaticFrames) never grows old
            return None
        latest = self.frames.latest()
        if latest is None:
            return None
        age_s = self._clock() - float(latest.time_s)
        return round(age_s, 2) if age_s > self.answers.max_frame_age_s else None

    def _check_teach_timeout(self, now: float) -> None:
        # An utterance that started before the deadline may still be going on: let it finish.
        if self.state == "teaching" and now > self._teach_deadline and not self._speaking(now):
            self._cancel_teach("timeout")

    def _teach_candidate(self, image: np.ndarray) -> Any:
        """The object held up: the finder's candidate centred in the teach region (nearest its centre), else the region.

        Taking the finder's own box makes the stored crop framed like the candidates it will be
        compared with at request time (same margins, same scale), which matters for any encoder.
        """
        region = self.teach_region(image)
        rx, ry, rw, rh = region.box
        cx, cy = rx + rw / 2, ry + rh / 2
        inside = []
        for c in self.finder.find(image):
            x, y, w, h = c.box
            mx, my = x + w / 2, y + h / 2
            if rx <= mx <= rx + rw and ry <= my <= ry + rh and w <= 1.5 * rw and h <= 1.5 * rh:
                inside.append(((mx - cx) ** 2 + (my - cy) ** 2, c))
        return min(inside, key=lambda t: t[0])[1] if inside else region

    def _best_sample(self, start_s: float | None, end_s: float | None) -> TeachSample | None:
        samples = self._during(start_s, end_s)
        if not samples:
            latest = self.frames.latest()
            if latest is None:
                return None
            cand = self._teach_candidate(latest.image)
            return TeachSample(latest, cand, sharpness(cand.crop))
        return max(samples, key=lambda s: (s.sharpness, s.frame.time_s))

    def _during(self, start_s: float | None, end_s: float | None) -> list[TeachSample]:
        samples = list(self._teach_samples)
        if start_s is not None and end_s is not None:
            during = [s for s in samples if start_s - 0.2 <= s.frame.time_s <= end_s]
            samples = during or samples  # clocks of file sources need not match the camera's
        return samples

    def _teach(self, utt: Any) -> None:
        t0 = self._clock()
        stale_s = self._stale_frame_age_s()
        if stale_s is not None:  # the camera stopped: its last frame need not show what is held up now
            self._cancel_teach("camera_frame_too_old", frame_age_s=stale_s, max_frame_age_s=self.answers.max_frame_age_s)
            return
        start_s, end_s = getattr(utt, "start_s", None), getattr(utt, "end_s", None)
        sample = self._best_sample(start_s, end_s)
        if sample is None:
            self._cancel_teach("no_camera_frame")
            return
        speech_vec = self.embed_speech(utt.pcm, utt.sample_rate_hz)
        t_speech = self._clock()
        s = self.teach_settings
        image_vec, first_mirror = sample.embedding, sample.mirror
        if image_vec is None:  # taken before the word, or one view kept: embedded now (with its mirror, in one batch)
            if s.mirror_views:
                image_vec, first_mirror = (v[0] for v in embed_with_mirror(self.image_encoder, [sample.candidate.crop]))
            else:
                image_vec = embed_crops(self.image_encoder, [sample.candidate.crop])[0]
        t_image = self._clock()
        chosen = choose_views(self._during(start_s, end_s), sample, s.views, s.view_min_sharpness, s.view_min_distance)
        iid, mid = self.image_encoder.encoder_id, mirror_id(self.image_encoder.encoder_id)
        mirror = {mid: first_mirror} if s.mirror_views and first_mirror is not None else {}
        extra = [(v.candidate.crop, {iid: v.embedding, **({mid: v.mirror} if mirror and v.mirror is not None else {})}) for v in chosen[1:]]
        pair_id = self.memory.teach(
            utt.pcm,
            utt.sample_rate_hz,
            sample.candidate.crop,
            label=self._teach_label,
            embeddings={self.speech_encoder.encoder_id: np.asarray(speech_vec), iid: image_vec, **mirror},
            **({"views": extra} if extra else {}),
        )  # committed durably before it returns: only then is the pair announced
        vectors = [image_vec, *(v.embedding for v in chosen[1:])]
        if mirror:
            vectors += [first_mirror, *(v.mirror for v in chosen[1:] if v.mirror is not None)]
        self.support.add(pair_id, speech_vec, np.stack([np.asarray(v, np.float32).reshape(-1) for v in vectors]), self._teach_label)
        t_store = self._clock()
        self.state = "idle"
        self._end_silence_for_state()
        self._teach_samples.clear()
        self.counts["taught"] += 1
        self.publish({
            "event": "taught",
            "pair_id": pair_id,
            "label": self._teach_label,
            "box": [int(v) for v in sample.candidate.box],
            "frame_time_s": round(float(sample.frame.time_s), 3),
            "sharpness": round(sample.sharpness, 1),
            "utterance_ms": round(1000.0 * len(utt.pcm) / utt.sample_rate_hz),
            "pairs": len(self.support),
            "views": len(chosen),
            "view_frame_times_s": [round(float(v.frame.time_s), 3) for v in chosen],
            "timings_ms": {  # the teach step, from the utterance's end to the pair committed
                "speech_embedding": round(1000 * (t_speech - t0), 3),
                "image_embedding": round(1000 * (t_image - t_speech), 3),
                "views_and_store": round(1000 * (t_store - t_image), 3),
            },
        })

    # ------------------------------------------------------------------ the view

    def _watch_camera(self, now: float) -> None:
        # The camera reports its own losses (on_event); this catches a source that only changes state,
        # and one that still says it is connected but has delivered no frame for max_frame_age_s.
        connected = bool(getattr(self.frames, "connected", True))
        stale_s = self._stale_frame_age_s() if connected else None
        alive = connected and stale_s is None
        self._camera_seen = self._camera_seen or alive
        if self._camera_seen and alive == ("camera" in self._devices_lost):
            event: Event = {"event": "device_recovered" if alive else "device_lost", "device": "camera"}
            if stale_s is not None:
                event["reason"] = f"no new frame for {stale_s:g} s"
            self.publish(event)
        frame = self.frames.latest()
        if frame is None or frame.index == self._last_frame_index:
            return
        self._last_frame_index = frame.index
        if self.state == "teaching":
            if now - self._last_sample_s >= self.teach_settings.sample_interval_ms / 1000.0:
                self._last_sample_s = now
                cand = self._teach_candidate(frame.image)
                embedding = mirror = None
                if self.teach_settings.views > 1 and self._speaking(now):  # embedded now, while the word is said, not on the teach step
                    if self.teach_settings.mirror_views:  # with its mirror, in one batch
                        embedding, mirror = (np.asarray(v[0], np.float32) for v in embed_with_mirror(self.image_encoder, [cand.crop]))
                    else:
                        embedding = np.asarray(embed_crops(self.image_encoder, [cand.crop])[0], np.float32)
                self._teach_samples.append(TeachSample(frame, cand, sharpness(cand.crop), embedding, mirror))
            return
        interval_s = self.answers.prefetch_interval_ms / 1000.0
        due = self._speaking(now) and now - self._last_prefetch_s >= interval_s
        if self.answers.recent_view_s > 0 and now - self._last_prefetch_s >= self.answers.recent_view_interval_s:
            due = True
        if due:
            self._last_prefetch_s = now
            self._embed_view(frame)

    def _embed_view(self, frame: Any) -> View:
        candidates = self.finder.find(frame.image)
        if candidates:
            embeddings = embed_crops(self.image_encoder, [c.crop for c in candidates])
        else:
            embeddings = np.zeros((0, 1), np.float32)
        view = View(frame, candidates, np.asarray(embeddings, np.float32))
        self._precompute_distances(view)
        self._views.append(view)
        keep_s = max(self.answers.recent_view_s, self.answers.reuse_view_ms / 1000.0)
        while len(self._views) > 1 and frame.time_s - self._views[0].frame.time_s > keep_s:
            self._views.popleft()
        return view

    def _precompute_distances(self, view: View) -> None:
        """Mutual exclusivity's request-independent part for a view, unless it is already there for the taught set as it is.

        The candidates against every taught view (10 x 50,000 x 1280 at 10,000 pairs of 5 views): done
        with the embeddings, while the person speaks, so the answer only picks the asked word's column.
        """
        if not view.candidates or not len(self.support) or self.matching.mutual_exclusivity is None:
            return
        if view.distances is None or view.distances.version != self.support.version:
            view.distances = self.support.candidate_distances(view.embeddings, self.matching)

    def _current_view(self) -> tuple[View | None, bool]:
        """The view to answer with, and whether its embeddings were already cached."""
        latest = self.frames.latest()
        if latest is None:
            return None, False
        if self._views:
            cached = self._views[-1]
            if latest.time_s - cached.frame.time_s <= self.answers.reuse_view_ms / 1000.0:
                return cached, True
        return self._embed_view(latest), False

    # ------------------------------------------------------------------ requests

    def _speech_samples(self, pcm: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        """Float samples at the speech encoder's rate (MFCC encoders: the features' rate), trimmed to the word."""
        rate = self.speech_encoder.sample_rate_hz
        samples = resample(to_float(np.asarray(pcm)), int(sample_rate_hz), rate)
        return trim_to_speech(samples, rate, self.utterances.trim_below_peak_db)

    def _warped_features(self, samples: np.ndarray) -> list[np.ndarray]:
        """Frames of a request's frequency-warped copies when DTW compares utterances (``matching.dtw_warp``), else none."""
        warp = self.matching.dtw_warp
        if warp <= 0 or self.support.metric == "cosine":
            return []
        rate = self.feature_settings.sample_rate_hz
        if rate != self.speech_encoder.sample_rate_hz:
            samples = resample(samples, self.speech_encoder.sample_rate_hz, rate)
        return warped_speech_features(samples, self.feature_settings, warp)

    def embed_speech(self, pcm: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        """What the support set compares for one utterance: an embedding, DTW's feature matrix, or both packed."""
        return np.asarray(self.speech_encoder.embed_audio([self._speech_samples(pcm, sample_rate_hz)])[0], np.float32)

    def answer(self, pcm: np.ndarray, sample_rate_hz: int) -> Event:
        """Answer one spoken request now (the ``ask`` command, the latency benchmark); publishes and returns the event."""
        return self._answer(pcm, sample_rate_hz, self._clock(), None)

    def clear_views(self) -> None:
        """Forget the cached views (the next answer embeds the candidates itself)."""
        self._views.clear()

    def view_snapshot(self) -> dict | None:
        """The newest embedded view's frame (index, time) and candidate boxes, or None; safe from any thread (the page reads it)."""
        try:
            view = self._views[-1]
        except IndexError:
            return None
        return {"frame_index": view.frame.index, "frame_time_s": view.frame.time_s, "boxes": [c.box for c in view.candidates]}

    def prefetch_view(self) -> View | None:
        """Embed the candidates of the newest frame, as the loop does while someone speaks."""
        frame = self.frames.latest()
        return None if frame is None else self._embed_view(frame)

    def _on_utterance(self, utt: Any) -> None:
        started = self._clock()
        self.counts["utterances"] += 1
        if self.state == "teaching":
            try:
                self._teach(utt)
            except Exception as exc:  # teach mode ends now, with the real reason (nothing was stored)
                self.counts["errors"] += 1
                log.error("teaching failed: %s: %s", type(exc).__name__, exc)
                self._cancel_teach("failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._answer(utt.pcm, utt.sample_rate_hz, started, utt)

    def _speech_side(self, pcm: np.ndarray, rate: int) -> tuple[np.ndarray, list[np.ndarray], float, float]:
        """A request's query (embedding, frames or both), DTW's warped copies, and the ms spent on each half."""
        t0 = self._clock()
        samples = self._speech_samples(pcm, rate)
        warped = self._warped_features(samples)
        t1 = self._clock()
        query = np.asarray(self.speech_encoder.embed_audio([samples])[0], np.float32)  # MFCC features (if any) and the network
        return query, warped, 1000 * (t1 - t0), 1000 * (self._clock() - t1)

    def _speculate(self) -> None:
        """At the first pause of a request, compute its speech side while the end silence still runs (``vad.end_silence_ms``).

        The endpointer hands out the utterance as it will end if the pause lasts (:meth:`edge.vad.Endpointer.pending`);
        when it does end so, :meth:`_answer` reuses the query, so the answer waits only for the match.
        """
        pending = getattr(self.endpointer, "pending", None)
        utt = pending() if pending is not None else None
        if utt is not None:
            self._speculative = (_utterance_key(utt), self._speech_side(utt.pcm, utt.sample_rate_hz))
            if self._views:  # the view the answer will likely use: its distances, if the taught set changed since
                self._precompute_distances(self._views[-1])

    def _answer(self, pcm: np.ndarray, rate: int, started_s: float, utterance: Any | None) -> Event:
        self.counts["requests"] += 1
        self._last_answer = None  # a confirmation after this request is about this request
        ahead, self._speculative = self._speculative, None
        if utterance is not None and ahead is not None and ahead[0] == _utterance_key(utterance):
            (query, warped, features_ms, speech_ms), precomputed = ahead[1], True  # computed during the pause
        else:
            (query, warped, features_ms, speech_ms), precomputed = self._speech_side(pcm, rate), False
        t_speech = self._clock()
        if len(self.support) == 0:
            return self.publish({"event": "unknown_word", "reason": "nothing_taught", "latency_ms": self._ms(started_s)})
        stale_s = self._stale_frame_age_s()
        view, cached = (None, False) if stale_s is not None else self._current_view()
        t_view = self._clock()
        empty = np.zeros((0, 1), np.float32)
        res = self.support.resolve(query, view.embeddings if view and view.candidates else empty, self.matching, warped,
                                   view.distances if view else None)
        used = view
        if res.status in ("not_in_view", "no_candidates") and self.answers.recent_view_s > 0:
            res, used = self._resolve_recent(res, view)
        t_match = self._clock()
        base: Event = {
            "pair_id": res.pair_id,
            "label": res.label,
            "speech_distance": _round(res.speech_distance),
            "view_cached": cached,
            "speech_precomputed": precomputed,  # the speech side ran during the pause: not part of latency_ms
            "timings_ms": {  # the parts of latency_ms (the speech ones before it when speech_precomputed)
                "features": round(features_ms, 3),  # resampling, trimming (and DTW's warped copies)
                "speech_embedding": round(speech_ms, 3),  # MFCC frames (for MFCC encoders and DTW) and the network
                "candidate_embeddings": round(1000 * (t_view - t_speech), 3),
                "match": round(1000 * (t_match - t_view), 3),
            },
        }
        if utterance is not None:
            base["utterance_ms"] = round(1000.0 * len(utterance.pcm) / utterance.sample_rate_hz)
        if res.status == "unknown_word":
            return self.publish({"event": "unknown_word", **base, "latency_ms": self._ms(started_s)})
        if res.status != "resolved" or used is None:
            no_view = "no_camera_frame" if stale_s is None else "camera_frame_too_old"
            event = {"event": "not_in_view", **base, "candidates": len(view.candidates) if view else 0,
                     "image_distance": _round(res.ranked[0].image_distance) if res.ranked else None,
                     "reason": no_view if view is None else res.status, "latency_ms": self._ms(started_s)}
            if stale_s is not None:
                event["frame_age_s"] = stale_s
            if view is not None:
                event["image"] = self._save(view, None, res, "not_in_view")
            return self.publish(event)
        best = res.best
        cand = used.candidates[best.index]
        self.counts["resolved"] += 1
        event = {
            "event": "resolved", **base,
            "box": [int(v) for v in cand.box],
            "image_distance": _round(best.image_distance),
            "word_probability": _round(best.word_probability),
            "frame_time_s": round(float(used.frame.time_s), 3),
            "in_view": used is view,
            "latency_ms": self._ms(started_s),
        }
        event["image"] = self._save(used, cand, res, "resolved")
        self._last_answer = Answer(self._clock(), int(res.pair_id), res.label, event["box"], cand.crop,
                                   np.asarray(used.embeddings[best.index], np.float32), float(best.image_distance))
        return self.publish(event)

    def _resolve_recent(self, res: Resolution, current: View | None) -> tuple[Resolution, View | None]:
        """Search the views of the last ``recent_view_s`` seconds, newest first, for the word already heard; the first resolution wins."""
        newest_s = current.frame.time_s if current is not None else self._clock()  # no current view: count back from now
        for view in reversed(self._views):
            if view is current or not view.candidates:
                continue
            if newest_s - view.frame.time_s > self.answers.recent_view_s:
                break
            again = self.support.resolve_in_view(res, view.embeddings, self.matching, view.distances)
            if again.status == "resolved":
                return again, view
        return res, current

    def _ms(self, started_s: float) -> float:
        return round(1000.0 * (self._clock() - started_s), 2)

    # ------------------------------------------------------------------ output

    def publish(self, event: Event) -> Event:
        """Stamp, log as one line, and hand to the sinks (control socket, demo, tests)."""
        event = {**event, "time_unix": round(time.time(), 3)}
        if event["event"] in ("device_lost", "device_recovered"):
            device = str(event.get("device"))
            lost = event["event"] == "device_lost"
            with self._publish_lock:  # devices report from their own threads
                if lost == (device in self._devices_lost):
                    return event  # already known (the device and the controller both noticed)
                (self._devices_lost.add if lost else self._devices_lost.discard)(device)
        log.info("event %s", json.dumps(event, separators=(",", ":"), default=str))
        try:
            self._publish_sink(event)
        except Exception:
            log.exception("publishing event %s failed", event.get("event"))
        return event

    def _save(self, view: View, cand: Any | None, res: Resolution, status: str) -> str | None:
        """Annotated JPEG of the answer, written atomically; its path, or None when disabled."""
        if self.answers.save_dir is None:
            return None
        out_dir = Path(self.answers.save_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            img = cv2.cvtColor(view.frame.image, cv2.COLOR_RGB2BGR)
            name = res.label or (f"pair {res.pair_id}" if res.pair_id is not None else "?")
            if cand is not None:
                x, y, w, h = (int(v) for v in cand.box)
                cv2.rectangle(img, (x, y), (x + w, y + h), (0, 220, 0), 2)
                cv2.putText(img, name, (x, max(14, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 220, 0), 2, cv2.LINE_AA)
            else:
                cv2.putText(img, f"not in view: {name}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 230), 2, cv2.LINE_AA)
            ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.answers.jpeg_quality])
            if not ok:
                raise OSError("JPEG encoding failed")
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = out_dir / f"{stamp}-{self.counts['requests']:05d}-{status}.jpg"
            write_atomic(path, data.tobytes(), mode=0o644)  # answer images are for people to look at
            self._saved.append(path)
            while len(self._saved) > self.answers.max_saved_images:
                self._saved.popleft().unlink(missing_ok=True)
            return str(path)
        except OSError as exc:
            log.warning("answers.save_dir %s: cannot save the answer image (%s)", out_dir, exc)
            return None


def _utterance_key(utt: Any) -> tuple:
    """What identifies one endpointed utterance: its capture times and length."""
    return (float(utt.start_s), float(utt.end_s), int(len(utt.pcm)))


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _pair_id(req: dict) -> int:
    value = req.get("pair_id", req.get("id_"))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"pair_id must be an integer, got {value!r}")
    return value


def _request_audio(req: dict, max_duration_ms: float, timeout_s: float) -> tuple[np.ndarray, int]:
    """The audio of an ``ask`` request: {"wav": path} or {"pcm_b64": ..., "sample_rate_hz": ...} (int16 mono), within the request limits."""
    if "wav" in req:
        samples = read_request_audio(str(req["wav"]), 16000, max_duration_ms, timeout_s)
        return (np.clip(samples, -1, 1) * 32767).astype(np.int16), 16000
    if "pcm_b64" in req:
        rate = req.get("sample_rate_hz", 16000)
        if not isinstance(rate, int) or isinstance(rate, bool) or rate not in REQUEST_RATES_HZ:
            raise ValueError(f"sample_rate_hz must be one of {', '.join(str(r) for r in REQUEST_RATES_HZ)}, got {str(rate)[:40]}")
        text = req["pcm_b64"]
        if not isinstance(text, str) or len(text) > 4 * ceil(2 * rate * max_duration_ms / 1000.0 / 3) + 4:
            raise ValueError(f"pcm_b64: more than {max_duration_ms / 1000:g} s of audio, or not text")
        try:
            pcm = np.frombuffer(base64.b64decode(text, validate=True), np.int16)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"pcm_b64: not base64 int16 audio ({type(exc).__name__})") from None
        if pcm.size < rate // 10:
            raise ValueError("pcm_b64: less than 0.1 s of audio")
        return pcm, rate
    raise ValueError("ask needs 'wav' (a path the daemon can read) or 'pcm_b64' with 'sample_rate_hz'")


def run_in_thread(controller: Controller) -> threading.Thread:
    """Start the controller loop in its own thread."""
    thread = threading.Thread(target=controller.run, name="controller", daemon=True)
    thread.start()
    return thread

