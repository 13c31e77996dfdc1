"""Fault probes of the config loader and ``showsay check`` (issue 19, items 6, 7, 8 and the config part of 12).

Each probe is a config (or model) that ``showsay run`` cannot run, or a hostile config file. A probe
is *held* when ``showsay check`` exits 1 within the time limit with one line on stderr that names the
setting (or the file), and no traceback. Prints tried/held per area and every probe not held.

    python tools/probe_config.py [--only AREA] [--timeout-s 20]

Needs the dev extras (the ``onnx`` package builds the doctored models). Every child runs under a
4 GiB address-space limit so a probe that eats memory cannot take the machine with it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHOWSAY = [sys.executable, "-m", "edge"]
MEMORY_LIMIT_BYTES = 4 << 30
DROP_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


@dataclasses.dataclass
class Probe:
    area: str
    name: str
    config: str  # YAML text (written to a file) or a path when ``path`` is set
    expect: str  # what the one-line message must contain
    path: str | None = None
    env: dict[str, str] | None = None
    unprivileged: bool = False  # run without CAP_DAC_OVERRIDE (as root, a directory owned by nobody is then unwritable)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_check(probe: Probe, work: Path, timeout_s: float) -> tuple[bool, str]:
    """(held, why) for one probe run through ``showsay check`` in a child process."""
    if probe.path is not None:
        cfg = probe.path
    else:
        cfg = str(work / f"{probe.area}-{probe.name}.yaml".replace(" ", "_"))
        Path(cfg).write_text(probe.config)
        os.chmod(cfg, 0o644)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(probe.env or {})}
    start = time.monotonic()
    try:
        prefix = DROP_DAC if probe.unprivileged and os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *SHOWSAY, "check", "--config", cfg], capture_output=True, text=True, timeout=timeout_s,
                              env=env, cwd=work, preexec_fn=_limit_memory, errors="replace")
    except subprocess.TimeoutExpired:
        return False, f"no answer within {timeout_s:.0f} s"
    took = time.monotonic() - start
    err = done.stderr.strip()
    lines = err.splitlines()
    if done.returncode == 0:
        return False, f"check passed it (exit 0): {done.stdout.strip()[:160]}"
    if "Traceback" in err:
        return False, f"traceback ({lines[-1][:160] if lines else ''})"
    if len(lines) != 1:
        return False, f"{len(lines)} lines on stderr: {err[:200]!r}"
    if len(lines[0]) > 1000:
        return False, f"message of {len(lines[0])} characters"
    if probe.expect not in lines[0]:
        return False, f"message does not name {probe.expect!r}: {lines[0][:200]}"
    return True, f"{took:.1f} s: {lines[0][:200]}"


# ---------------------------------------------------------------------------- non-finite numbers


def nonfinite_probes() -> list[tuple[str, dict]]:
    """(dotted key, mapping) for .nan/.inf/-.inf in every float setting and every float list of Config."""
    from edge.config import Config

    def leaves(cls: type, prefix: str = ""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, key = hints[f.name], f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                yield from leaves(tp, key + ".")
            else:
                yield key, tp, f.default

    out = []
    for key, tp, default in leaves(Config):
        if "float" not in str(tp):
            continue
        section, name = key.split(".")
        for bad in (float("nan"), float("inf"), float("-inf")):
            value = [bad] if typing.get_origin(tp) is tuple else bad
            out.append((key, {section: {name: value}}))
    return out


def run_nonfinite() -> tuple[int, int, list[str]]:
    from edge.config import ConfigError, config_from_mapping

    tried = held = 0
    missed = []
    for key, values in nonfinite_probes():
        tried += 1
        try:
            config_from_mapping(values, "probe.yaml")
        except ConfigError as exc:
            if key in str(exc):
                held += 1
                continue
            missed.append(f"{key}={values}: message does not name the key: {exc}")
            continue
        missed.append(f"{key}={list(values.values())[0]}: accepted")
    return tried, held, missed


# ---------------------------------------------------------------------------- check vs run


def check_vs_run_probes(work: Path) -> list[Probe]:
    ro = work / "readonly"
    ro.mkdir(exist_ok=True)
    os.chmod(ro, 0o755)
    if os.geteuid() == 0:
        os.chown(ro, 65534, 65534)  # not ours: the probes below run without CAP_DAC_OVERRIDE
    nogpiod = work / "nogpiod"
    nogpiod.mkdir(exist_ok=True)
    (nogpiod / "gpiod.py").write_text("raise ImportError('No module named gpiod (probe)')\n")
    os.chmod(work, 0o755)
    a = "area"
    base = "encoders: {speech: dtw, image: pixels}\n"
    return [
        Probe(a, "vad.frame_ms != microphone.frame_ms", base + "vad: {frame_ms: 20}\n", "vad.frame_ms"),
        Probe(a, "max_utterance_ms < min_utterance_ms", base + "vad: {min_utterance_ms: 800, max_utterance_ms: 500}\n", "max_utterance_ms"),
        Probe(a, "top-level false", "false\n", "expected a mapping"),
        Probe(a, "top-level 0", "0\n", "expected a mapping"),
        Probe(a, "top-level []", "[]\n", "expected a mapping"),
        Probe(a, "duplicate key", base + "matching:\n  unknown_word_distance: 0.3\n  unknown_word_distance: 0.9\n", "unknown_word_distance"),
        Probe(a, "duplicate section", base + "matching:\n  unknown_word_distance: 0.3\nmatching:\n  dtw_warp: 0.1\n", "matching"),
        Probe(a, "missing camera file", base + "camera: {source: /nonexistent/cam.mp4}\n", "camera.source"),
        Probe(a, "missing gpiochip", base + "button: {kind: gpiod, chip: /dev/gpiochip97}\n", "button.chip"),
        Probe(a, "gpiod not installed", base + "button: {kind: gpiod, chip: /dev/null}\n", "gpiod",
              env={"PYTHONPATH": f"{nogpiod}:{ROOT}"}),
        Probe(a, "state dir not writable", base + f"memory: {{state_dir: {ro}/state}}\ncontrol: {{socket_path: /tmp/probe-{os.getpid()}/c.sock}}\n",
              "memory.state_dir", unprivileged=True),
        Probe(a, "socket dir not writable", base + f"memory: {{state_dir: /tmp/probe-{os.getpid()}-s}}\ncontrol: {{socket_path: {ro}/c.sock}}\n",
              "control.socket_path", unprivileged=True),
        Probe(a, "answer dir not writable", base + f"memory: {{state_dir: /tmp/probe-{os.getpid()}-s}}\ncontrol: {{socket_path: /tmp/probe-{os.getpid()}/c.sock}}\n"
              f"answers: {{save_dir: {ro}/answers}}\n", "answers.save_dir", unprivileged=True),
    ]


# ---------------------------------------------------------------------------- models


def model_probes(work: Path) -> list[Probe]:
    import onnx
    from onnx import numpy_helper

    from export.metadata import weights_sha256

    models = ROOT / "edge" / "models"

    def doctored(name: str, src: str, change, refresh_hash: bool = True) -> str:
        m = onnx.load(str(models / src))
        change(m)
        if refresh_hash:
            for p in m.metadata_props:
                if p.key == "showsay.weights_sha256":
                    p.value = weights_sha256(m)
        out = work / f"{name}.onnx"
        onnx.save(m, str(out))
        os.chmod(out, 0o644)
        return str(out)

    def meta(m, key: str, fn) -> None:
        for p in m.metadata_props:
            if p.key == key:
                p.value = fn(p.value)

    def rename_output(m) -> None:
        for node in m.graph.node:
            node.output[:] = ["emb" if o == "embeddings" else o for o in node.output]
        m.graph.output[0].name = "emb"

    def poison(m) -> None:
        init = m.graph.initializer[0]
        arr = numpy_helper.to_array(init).copy()
        arr[...] = np.nan
        init.CopyFrom(numpy_helper.from_array(arr, init.name))

    def nudge(m) -> None:
        init = m.graph.initializer[0]
        arr = numpy_helper.to_array(init) * np.float32(1.01)
        init.CopyFrom(numpy_helper.from_array(arr.astype(numpy_helper.to_array(init).dtype), init.name))

    def settings(m) -> None:
        meta(m, "showsay.image_settings", lambda v: json.dumps({**json.loads(v), "size_px": 32}))

    def dim(m) -> None:
        meta(m, "showsay.embedding_dim", lambda v: str(int(v) + 1))

    a = "models"

    def image(path: str) -> str:
        return f"encoders: {{speech: dtw, image: {path}}}\n"

    def speech(path: str) -> str:
        return f"encoders: {{speech: {path}, image: pixels}}\n"

    return [
        Probe(a, "image output misnamed", image(doctored("out_renamed", "image_digits.onnx", rename_output)), "embeddings"),
        Probe(a, "image settings misfit the graph", image(doctored("misfit", "image_digits.onnx", settings)), "image_settings"),
        Probe(a, "image NaN outputs", image(doctored("nan_image", "image_digits.onnx", poison)), "finite"),
        Probe(a, "image embedding size", image(doctored("dim_image", "image_digits.onnx", dim)), "embedding_dim"),
        Probe(a, "image weights hash", image(doctored("hash_image", "image_digits.onnx", nudge, refresh_hash=False)), "weights_sha256"),
        Probe(a, "speech output misnamed", speech(doctored("out_renamed_s", "speech.onnx", rename_output)), "embeddings"),
        Probe(a, "speech NaN outputs", speech(doctored("nan_speech", "speech.onnx", poison)), "finite"),
        Probe(a, "speech embedding size", speech(doctored("dim_speech", "speech.onnx", dim)), "embedding_dim"),
        Probe(a, "speech weights hash", speech(doctored("hash_speech", "speech.onnx", nudge, refresh_hash=False)), "weights_sha256"),
    ]


# ---------------------------------------------------------------------------- hostile files


def hostile_probes(work: Path) -> list[Probe]:
    fifo = work / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    bomb = ["matching:", "  word_best_of:", "    - &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):  # 10^9 values in 400 bytes, under a real key
        bomb.append(f"    - &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb_text = "\n".join(bomb) + "\n"
    big = work / "big.yaml"
    with open(big, "w") as f:
        f.write("# padding\n" * 8_000_000)  # 80 MB of comments
    os.chmod(big, 0o644)
    a = "files"
    depth = 100_000
    return [
        Probe(a, "NUL byte in a path", 'memory:\n  state_dir: "/tmp/a\\0b"\n', "memory.state_dir"),
        Probe(a, "100k-digit integer", "encoders:\n  threads: " + "9" * 100_000 + "\n", "encoders.threads"),
        Probe(a, "100k-digit float", "matching:\n  dtw_warp: 1" + "0" * 100_000 + ".0\n", "matching.dtw_warp"),
        Probe(a, "deep nesting", "matching:\n  dtw_warp: " + "[" * depth + "]" * depth + "\n", "deep"),
        Probe(a, "/dev/zero", "", "/dev/zero", path="/dev/zero"),
        Probe(a, "FIFO", "", "fifo.yaml", path=str(fifo)),
        Probe(a, "directory", "", str(work), path=str(work)),
        Probe(a, "alias bomb", bomb_text, "matching.word_best_of"),
        Probe(a, "80 MB file", "", "big.yaml", path=str(big)),
        Probe(a, "1e400", "matching:\n  dtw_warp: 1.0e+400\n", "matching.dtw_warp"),
        Probe(a, "unhashable key", "matching:\n  ? [a, b]\n  : 1\n", "matching"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["values", "area", "models", "files"], help="run one area")
    p.add_argument("--timeout-s", type=float, default=20.0, help="time limit per check run, s")
    args = p.parse_args(argv)
    totals = []
    with tempfile.TemporaryDirectory(prefix="probe-config-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        if args.only in (None, "values"):
            tried, held, missed = run_nonfinite()
            totals.append(("non-finite numbers (every float setting and list x nan, inf, -inf)", tried, held, missed))
        makers = {"area": ("check refuses what run cannot run", check_vs_run_probes),
                  "models": ("models checked on a probe input", model_probes),
                  "files": ("hostile config files", hostile_probes)}
        for key, (title, make) in makers.items():
            if args.only not in (None, key):
                continue
            tried = held = 0
            missed = []
            for probe in make(work):
                tried += 1
                ok, why = run_check(probe, work, args.timeout_s)
                held += ok
                print(f"  [{'held' if ok else 'MISS'}] {probe.area}: {probe.name}: {why}", flush=True)
                if not ok:
                    missed.append(f"{probe.name}: {why}")
            totals.append((title, tried, held, missed))
    print()
    for title, tried, held, missed in totals:
        print(f"{title}: {held} of {tried} held")
        for m in missed[:60]:
            print(f"    not held: {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
