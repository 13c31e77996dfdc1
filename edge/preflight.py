"""What ``showsay run`` needs that can be checked without taking a device, for ``check`` and ``run`` alike.

``showsay check`` is the unit's ``ExecStartPre``: a config it passes must start. The settings'
own ``validate()`` methods hold the rules between values (:class:`edge.config.Config` those between
sections); this module holds the rules about the machine: the directories the daemon writes
(state, control socket, answer images) can be written, the camera's video file exists, the
button's GPIO chip and library are there, a GStreamer pipeline has an OpenCV that can open it.
Each problem is one line naming the setting. Nothing is opened for good: a directory is tested
with an unnamed temporary file (``O_TMPFILE``, or a named one removed at once), nothing is created.
The microphone is not checked (querying PortAudio re-initialises it; ``microphone.wait_for_device``
decides what a missing one means), nor is a camera device or URL (the camera reconnects).
"""
from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

UNIX_PATH_MAX_BYTES = 107  # sun_path holds 108 bytes with the terminating NUL


def preflight(cfg: Any) -> list[str]:
    """Every problem that would stop ``run`` with this config, as ``key: what is wrong`` lines."""
    problems: list[str] = []
    state_dir = Path(cfg.memory.state_dir).expanduser()
    state = _writable_dir("memory.state_dir", state_dir)
    problems += state or _regular_if_there("memory.db_name", state_dir / cfg.memory.db_name, "memory file")
    socket_path = Path(cfg.control.socket_path).expanduser()
    size = len(os.fsencode(socket_path))
    if size > UNIX_PATH_MAX_BYTES:
        problems.append(f"control.socket_path: {socket_path} is {size} bytes, a Unix socket path holds at most {UNIX_PATH_MAX_BYTES}")
    socket_dir = _writable_dir("control.socket_path", socket_path.parent)
    problems += socket_dir
    if not socket_dir and os.path.lexists(socket_path) and not stat.S_ISSOCK(os.lstat(socket_path).st_mode):
        problems.append(f"control.socket_path: {socket_path} exists and is not a socket (the daemon will not replace it)")
    if cfg.answers.save_dir is not None:
        problems += _writable_dir("answers.save_dir", Path(cfg.answers.save_dir).expanduser())
    problems += _camera(cfg.camera)
    problems += _button(cfg.button)
    problems += _microphone(cfg.microphone)
    problems += _web(cfg.web)
    return problems


def _writable_dir(key: str, directory: Path) -> list[str]:
    """[] when files can be made in ``directory``, or in the nearest existing folder above it (it will be created)."""
    target = directory
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if not target.is_dir():
        return [f"{key}: {directory} cannot be created: {target} is not a directory"]
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        what = f"{directory} is not writable" if target == directory else f"{directory} cannot be created in {target}"
        hint = " (as the service: StateDirectory=/RuntimeDirectory= in the unit, or a folder the service's user owns)"
        return [f"{key}: {what} ({reason}){hint if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else ''}"]
    return []


def _regular_if_there(key: str, path: Path, what: str) -> list[str]:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{key}: {path}: cannot be examined ({exc.strerror})"]
    if not stat.S_ISREG(mode):
        return [f"{key}: {path} is not a regular file; the {what} must be one"]
    return []


def _camera(settings: Any) -> list[str]:
    from edge.camera import opencv_has_gstreamer, source_kind

    kind = source_kind(settings.source)
    if kind == "file":
        path = Path(settings.source).expanduser()
        if not path.exists():
            return [f"camera.source: {settings.source}: no such video file (a device index like \"0\", a URL or a pipeline are the other kinds)"]
        if not path.is_file():
            return [f"camera.source: {settings.source} is not a regular file"]
        if not os.access(path, os.R_OK):
            return [f"camera.source: {settings.source} is not readable"]
    if kind == "pipeline":
        try:
            import cv2
        except ImportError as exc:
            return [f"camera.source: OpenCV cannot be imported ({exc}); install opencv-python-headless"]
        if not opencv_has_gstreamer(cv2):
            return [f"camera.source: a GStreamer pipeline, but this OpenCV ({cv2.__version__}) is built without GStreamer "
                    "(the pip wheels are); on a Jetson use JetPack's OpenCV"]
    return []


def _button(settings: Any) -> list[str]:
    if settings.kind == "gpiod":
        problems = []
        try:
            importlib.import_module("gpiod")
        except ImportError as exc:
            problems.append(f"button.kind: gpiod, but the gpiod package cannot be imported ({exc}); pip install 'showsay[jetson]'")
        chip = Path(settings.chip)
        if not chip.exists():
            problems.append(f"button.chip: {chip}: no such GPIO chip (ls /dev/gpiochip*)")
        elif not stat.S_ISCHR(chip.stat().st_mode):
            problems.append(f"button.chip: {chip} is not a character device")
        elif not os.access(chip, os.R_OK | os.W_OK):
            problems.append(f"button.chip: {chip} is not readable and writable (the gpio group, SupplementaryGroups=gpio)")
        return problems
    if settings.kind == "jetson":
        if importlib.util.find_spec("Jetson") is None or importlib.util.find_spec("Jetson.GPIO") is None:
            return ["button.kind: jetson, but Jetson.GPIO is not installed (JetPack ships it: a venv with --system-site-packages)"]
        if not Path("/dev/gpiochip0").exists():
            return ["button.kind: jetson, but /dev/gpiochip0 is missing (Jetson.GPIO needs it)"]
    return []


def _microphone(settings: Any) -> list[str]:
    """A file or program named by microphone.source must be there (a sound device is not checked, see above)."""
    import shlex
    import shutil

    from edge.hearing import COMMAND_PREFIX

    if settings.source is None:
        return []
    if settings.source.startswith(COMMAND_PREFIX):
        try:
            argv = shlex.split(settings.source[len(COMMAND_PREFIX):])
        except ValueError as exc:
            return [f"microphone.source: {settings.source!r} cannot be split into arguments ({exc})"]
        if shutil.which(argv[0]) is None:
            return [f"microphone.source: no program {argv[0]!r} (not on PATH and not an executable file)"]
        return []
    path = Path(settings.source).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        return [f"microphone.source: {settings.source}: no readable sound file (a wav or FLAC file, or 'command: PROGRAM ARGS')"]
    return []


def _web(settings: Any) -> list[str]:
    """The page's token file, when the page is on: private, ours, a usable token."""
    if not settings.enabled or settings.token_file is None:
        return []
    from edge.web.server import WebError, load_token

    try:
        load_token(settings.token_file)
    except WebError as exc:
        return [str(exc)]
    return []
