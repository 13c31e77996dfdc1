"""TensorRT runtime backend: an engine built by 'showsay export engine', behind the OnnxEncoder interface.

``load_engine_encoder(path)`` checks the manifest beside the engine against this GPU, this
TensorRT version and the config's speech features, then deserialises the engine at start-up. One
owner thread holds the CUDA context, the engine, its execution context, one CUDA stream and the
page-locked host and device buffers; ``embed()`` callers hand it their batch and wait. Buffers are
reused across calls and grown only when a larger shape comes. tensorrt and pycuda are imported
only inside this module's functions, so the rest of the runtime never needs them.

Tested against the TensorRT 8.6 and 10.x Python APIs (name-based I/O: ``num_io_tensors``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), as shipped by JetPack 5 and 6.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

import numpy as np

from edge.model_io import (
    EMBEDDING_OUTPUT,
    IMAGE_INPUT,
    SPEECH_INPUT,
    WAVEFORM_INPUT,
    ModelError,
    ModelInfo,
    model_feeds,
    model_inputs,
)
from edge.trt_manifest import (
    DeviceIdentity,
    EngineManifest,
    Profile,
    check_in_profile,
    check_manifest,
    read_manifest,
    rebuild_hint,
)

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "on a Jetson, install JetPack's TensorRT (it ships the tensorrt Python package; make the venv with "
    "--system-site-packages so it is visible) and pycuda with: pip install 'showsay[jetson]'; "
    "elsewhere use encoders.backend: onnxruntime"
)
EMBED_TIMEOUT_S = 30.0  # one embed call; the first call on a fresh engine includes lazy CUDA set-up
START_TIMEOUT_S = 120.0  # deserialising a large engine on a Jetson Nano-class board takes seconds

R = TypeVar("R")
T = TypeVar("T")


class BackendUnavailable(ModelError):
    """tensorrt or pycuda cannot be imported here."""


def import_tensorrt() -> Any:
    """The tensorrt module, or :class:`BackendUnavailable` saying what to install."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - only on the TensorRT path
    except (ImportError, OSError) as exc:  # OSError: the package is there but libnvinfer is not
        raise BackendUnavailable(f"TensorRT is not available ({exc}); {INSTALL_HINT}") from None
    return trt


def import_pycuda() -> Any:
    """pycuda.driver, or :class:`BackendUnavailable` saying what to install."""
    try:
        import pycuda.driver as cuda  # noqa: PLC0415
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(f"pycuda is not available ({exc}); {INSTALL_HINT}") from None
    return cuda


def trt_major(trt: Any) -> int:
    """TensorRT's major version (8 or 10 on current JetPacks)."""
    return int(str(trt.__version__).split(".")[0])


def device_identity(trt: Any, cuda: Any, device_index: int = 0) -> DeviceIdentity:
    """This GPU's name and compute capability and the TensorRT version (initialises the CUDA driver)."""
    try:
        cuda.init()
        dev = cuda.Device(device_index)
        major, minor = dev.compute_capability()
        return DeviceIdentity(dev.name(), f"{major}.{minor}", str(trt.__version__))
    except cuda.Error as exc:
        raise ModelError(f"no usable CUDA GPU {device_index} ({exc}); TensorRT engines need the Jetson's GPU") from None


class CudaContext:
    """The device's primary CUDA context made current on the calling thread (TensorRT uses the primary context)."""

    def __init__(self, cuda: Any, device_index: int = 0) -> None:
        cuda.init()
        self._ctx = cuda.Device(device_index).retain_primary_context()
        self._ctx.push()

    def close(self) -> None:
        """Pop the context from this thread and release it."""
        self._ctx.pop()
        self._ctx.detach()


def make_logger(trt: Any) -> Any:
    """A trt.ILogger forwarding to Python logging; keeps the errors so failures can quote them."""

    class ForwardingLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            sev = trt.ILogger.Severity
            self._levels = {
                sev.INTERNAL_ERROR: logging.CRITICAL,
                sev.ERROR: logging.ERROR,
                sev.WARNING: logging.WARNING,
                sev.INFO: logging.DEBUG,
                sev.VERBOSE: 5,
            }

        def log(self, severity: Any, msg: str) -> None:
            level = self._levels.get(severity, logging.INFO)
            if level >= logging.ERROR:
                self.errors.append(msg)
            if level >= logging.DEBUG:
                log.log(level, "TensorRT: %s", msg)

    return ForwardingLogger()


class GrowingBuffers:
    """Host and device buffers per tensor name, reused across calls and grown only when a larger shape comes.

    ``alloc_host(n_elements, dtype)`` and ``alloc_device(n_bytes)`` come from pycuda on the GPU
    (``pagelocked_empty``, ``mem_alloc``); tests pass numpy allocators.
    """

    def __init__(
        self,
        alloc_host: Callable[[int, np.dtype], np.ndarray],
        alloc_device: Callable[[int], Any],
        free_device: Callable[[Any], None] = lambda d: None,
    ) -> None:
        self._alloc_host, self._alloc_device, self._free_device = alloc_host, alloc_device, free_device
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        self.allocations = 0  # how many times any buffer was (re)allocated

    def get(self, name: str, shape: Sequence[int], dtype: Any) -> tuple[np.ndarray, Any]:
        """(host view of ``shape``, device buffer) for ``name``; reallocated only if too small or of another dtype."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64))
        host = self._host.get(name)
        if host is None or host.size < n or host.dtype != dtype:
            if name in self._device:
                self._free_device(self._device.pop(name))
            self._host[name] = host = self._alloc_host(max(n, 1), dtype)
            self._device[name] = self._alloc_device(max(n, 1) * dtype.itemsize)
            self.allocations += 1
        return host[:n].reshape(tuple(shape)), self._device[name]

    def capacity(self, name: str) -> int:
        """Elements the buffer for ``name`` holds now (0 if none yet)."""
        host = self._host.get(name)
        return 0 if host is None else int(host.size)

    def clear(self) -> None:
        """Free every buffer."""
        for dev in self._device.values():
            self._free_device(dev)
        self._host.clear()
        self._device.clear()


class OwnerThread(Generic[R]):
    """One thread that opens a resource, runs every call on it, then closes it.

    CUDA contexts and TensorRT execution contexts must not be shared between threads; callers of
    :meth:`call` hand work to this thread through a bounded queue and wait for the result.
    """

    def __init__(self, name: str, open_fn: Callable[[], R], close_fn: Callable[[R], None], queue_size: int = 4) -> None:
        self.name = name
        self._open, self._close = open_fn, close_fn
        self._jobs: queue.Queue[tuple[Callable[[R], Any], concurrent.futures.Future] | None] = queue.Queue(maxsize=queue_size)
        self._ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._closed = False

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the thread and wait until the resource is open; re-raises what opening it raised."""
        self._thread.start()
        try:
            self._ready.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            raise ModelError(f"{self.name}: not ready within {timeout_s:g} s") from None
        except BaseException:
            self._closed = True
            self._thread.join(timeout=timeout_s)
            raise

    def _main(self) -> None:
        try:
            resource = self._open()
        except BaseException as exc:  # handed to start()'s caller
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                fn, fut = job
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn(resource))
                except BaseException as exc:  # handed to call()'s caller
                    fut.set_exception(exc)
        finally:
            try:
                self._close(resource)
            except Exception:
                log.exception("%s: closing failed", self.name)

    def call(self, fn: Callable[[R], T], timeout_s: float = EMBED_TIMEOUT_S) -> T:
        """Run ``fn(resource)`` on the owner thread and return its result (or raise what it raised)."""
        if self._closed:
            raise ModelError(f"{self.name}: closed")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._jobs.put((fn, fut), timeout=timeout_s)
            return fut.result(timeout=timeout_s)
        except (queue.Full, concurrent.futures.TimeoutError):
            fut.cancel()
            raise ModelError(f"{self.name}: no result within {timeout_s:g} s") from None

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish queued calls, close the resource on its own thread and stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._jobs.put(None, timeout=timeout_s)
        except queue.Full:
            log.error("%s: queue still full after %g s; the thread is left to finish", self.name, timeout_s)
            return
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.error("%s: thread did not stop within %g s", self.name, timeout_s)


class EngineRunner:
    """The TensorRT engine, its execution context, one stream and the buffers; lives on the owner thread only."""

    def __init__(self, engine_path: Path, manifest: EngineManifest, speech_features: Mapping[str, Any] | None) -> None:
        trt, cuda = import_tensorrt(), import_pycuda()
        self._trt, self._cuda = trt, cuda
        device = device_identity(trt, cuda)
        check_manifest(manifest, engine_path, device, speech_features)
        data = engine_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest.engine_sha256:
            raise ModelError(f"{engine_path}: the engine file does not match its manifest (sha256 differs: corrupt or replaced); {rebuild_hint(manifest, engine_path)}")
        self._ctx = CudaContext(cuda)
        try:
            self._open_engine(data, engine_path, manifest)
        except BaseException:
            self._ctx.close()
            raise

    def _open_engine(self, data: bytes, engine_path: Path, manifest: EngineManifest) -> None:
        trt, cuda = self._trt, self._cuda
        self._logger = make_logger(trt)  # kept alive as long as the runtime
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise ModelError(f"{engine_path}: TensorRT could not deserialise the engine ({'; '.join(self._logger.errors) or 'see the log'}); {rebuild_hint(manifest, engine_path)}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelError(f"{engine_path}: TensorRT could not create an execution context (out of GPU memory?)")
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if EMBEDDING_OUTPUT not in self.outputs:
            raise ModelError(f"{engine_path}: the engine has no output {EMBEDDING_OUTPUT!r} (outputs: {self.outputs}); rebuild it from a showsay ONNX encoder")
        for name in self.inputs:
            if engine.is_shape_inference_io(name):
                raise ModelError(f"{engine_path}: input {name} is a shape tensor in this engine; export the model so {name} only feeds element-wise ops")
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.profile: Profile = {}
        for name in self.inputs:
            lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
            self.profile[name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
        self._stream = cuda.Stream()
        self._buffers = GrowingBuffers(cuda.pagelocked_empty, cuda.mem_alloc, lambda d: d.free())

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N, dim) float32 embeddings of one batch; shapes must lie within the profile (checked by the caller)."""
        cuda, ctx = self._cuda, self._context
        for name in self.inputs:
            arr = np.asarray(feeds[name])
            if not ctx.set_input_shape(name, tuple(arr.shape)):
                raise ModelError(f"TensorRT refused shape {tuple(arr.shape)} for input {name} (profile {self.profile.get(name)})")
            host, dev = self._buffers.get(name, arr.shape, self.dtypes[name])
            host[...] = arr  # casts to the engine's dtype (int64 lengths on TensorRT 10 engines)
            cuda.memcpy_htod_async(dev, host, self._stream)
            ctx.set_tensor_address(name, int(dev))
        outputs: dict[str, tuple[np.ndarray, Any]] = {}
        for name in self.outputs:
            shape = tuple(ctx.get_tensor_shape(name))  # known once every input shape is set
            outputs[name] = self._buffers.get(name, shape, self.dtypes[name])
            ctx.set_tensor_address(name, int(outputs[name][1]))
        if not ctx.execute_async_v3(self._stream.handle):
            raise ModelError(f"TensorRT execution failed ({'; '.join(self._logger.errors[-3:]) or 'see the log'})")
        for host, dev in outputs.values():
            cuda.memcpy_dtoh_async(host, dev, self._stream)
        self._stream.synchronize()
        return np.array(outputs[EMBEDDING_OUTPUT][0], dtype=np.float32, copy=True)  # the host buffer is reused

    def close(self) -> None:
        """Free buffers, the context, the engine, then pop the CUDA context (on the owner thread)."""
        try:
            self._buffers.clear()
            del self._stream, self._context, self._engine, self._runtime  # in dependency order
        finally:
            self._ctx.close()


class TensorRTEncoder:
    """An encoder running as a TensorRT engine: same ``embed()`` as :class:`edge.encoders.OnnxEncoder`."""

    metric = "cosine"

    def __init__(self, path: Path, manifest: EngineManifest, worker: OwnerThread, profile: Profile) -> None:
        self.path = path
        self.manifest = manifest
        self.precision = manifest.precision
        self.info = ModelInfo.from_metadata(manifest.metadata, str(manifest_source(path)))
        self.encoder_id = self.info.model_id  # same model, same embeddings within the verified tolerance
        self.settings = self.info.image_settings  # image encoders only
        self.input_kind, self.sample_rate_hz, self.protocol = self.info.input_kind, self.info.sample_rate_hz, self.info.protocol
        expected = self.info.input_names
        if set(profile) != expected:
            raise ModelError(f"{path}: engine inputs are {sorted(profile)}, expected {sorted(expected)} for a {self.info.kind} encoder "
                             f"({self.input_kind} input); rebuild it from a showsay ONNX encoder")
        self.profile = profile
        main_input = {"mfcc": SPEECH_INPUT, "waveform": WAVEFORM_INPUT, "image": IMAGE_INPUT}[self.input_kind]
        self.max_batch = int(profile[main_input]["max"][0])
        self._worker = worker
        self._warned_batch = False

    def embed(self, batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, dim) embeddings: feature matrices or waveforms for speech (by ``input_kind``), an image batch (all candidates of a frame) for images.

        A batch larger than the engine's profile runs in profile-sized calls (logged once: raise
        ``tensorrt.max_*_batch`` and rebuild); an utterance longer than the profile is refused.
        """
        if len(batch) == 0:
            return np.zeros((0, self.info.embedding_dim), np.float32)
        if len(batch) > self.max_batch:
            if not self._warned_batch:
                log.warning("%s: batches of %d split into calls of %d (the engine's profile); raise tensorrt.max_%s_batch and rebuild to run them at once",
                            self.path, len(batch), self.max_batch, self.info.kind)
                self._warned_batch = True
            return np.concatenate([self.embed(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])
        feeds = model_feeds(self.info, batch)
        check_in_profile({k: v.shape for k, v in feeds.items()}, self.profile, str(self.path))
        return self._worker.call(lambda runner: runner.run(feeds))

    def embed_audio(self, utterances: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) embeddings of mono float32 utterances at ``sample_rate_hz`` (speech engines), as OnnxEncoder."""
        return self.embed(model_inputs(self.info, utterances))

    def close(self) -> None:
        """Release the engine and the GPU memory (on the owner thread)."""
        self._worker.close()

    def __enter__(self) -> "TensorRTEncoder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def manifest_source(path: Path) -> Path:
    """The manifest file of an engine (for messages)."""
    return path.with_name(path.name + ".json")


def engine_path_for(path: str | os.PathLike) -> Path:
    """The engine a configured model name means: 'M.onnx' runs as the 'M.engine' built beside it."""
    p = Path(path)
    return p.with_suffix(".engine") if p.suffix == ".onnx" else p


def load_engine_encoder(path: str | os.PathLike, speech_features: Mapping[str, Any] | None = None) -> TensorRTEncoder:
    """Deserialise a TensorRT engine now (before the daemon reports ready) after checking its manifest.

    ``path`` is the engine or the ONNX model it was built from (the engine is then ``M.engine``
    beside ``M.onnx``). ``speech_features`` (the config's, as a dict) makes a speech engine trained
    on other features be refused. Raises :class:`ModelError` (or :class:`BackendUnavailable`)
    with what to do; never needs tensorrt before this call.
    """
    import_tensorrt()
    import_pycuda()
    engine = engine_path_for(path)
    if not engine.is_file():
        onnx = engine.with_suffix(".onnx")
        raise ModelError(f"{engine}: no such TensorRT engine; build it on this device with: showsay export engine --onnx {onnx} --out {engine} --fp16")
    manifest = read_manifest(engine)
    worker: OwnerThread[EngineRunner] = OwnerThread(
        f"tensorrt:{engine.name}", lambda: EngineRunner(engine, manifest, speech_features), lambda r: r.close()
    )
    worker.start()
    try:
        enc = TensorRTEncoder(engine, manifest, worker, worker.call(lambda r: r.profile))
    except BaseException:
        worker.close()
        raise
    log.info("%s: TensorRT %s engine (%s) for %s ready", engine, manifest.tensorrt_version, manifest.precision, enc.encoder_id)
    return enc


__all__ = [
    "BackendUnavailable",
    "EngineRunner",
    "GrowingBuffers",
    "OwnerThread",
    "TensorRTEncoder",
    "device_identity",
    "engine_path_for",
    "import_pycuda",
    "import_tensorrt",
    "load_engine_encoder",
]
