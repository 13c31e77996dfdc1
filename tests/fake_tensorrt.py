"""Stand-ins for ``tensorrt`` and ``pycuda.driver`` so the build and run paths execute without a GPU.

They keep the parts of the real libraries' contracts that our code depends on, and check them:
the ONNX parser reports errors per node; ``build_serialized_network`` needs an optimisation profile
for every input and drives an INT8 calibrator like TensorRT does (cache first, then ``get_batch``
until ``None``); an execution context refuses shapes outside the profile, refuses to run before
every I/O tensor has an address, and must be used on a thread where the CUDA context is current;
device memory is addressed by integer pointers. The "engine" is the ONNX model run by ONNX Runtime,
so embeddings can be compared. These do not replace the ``gpu`` tests: real TensorRT behaviour
(kernels, precision, memory) is only checked on a Jetson.
"""
from __future__ import annotations

import json
import threading
import types
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

MAGIC = b"FAKE-TRT-ENGINE\n"
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}
_ONNX_TO_TRT = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT32"}


# ---------------------------------------------------------------- pycuda.driver


class FakeCuda(types.ModuleType):
    """pycuda.driver: one GPU, a per-thread current context, device memory addressed by int pointers."""

    Error = RuntimeError

    def __init__(self, gpu_name: str = "Orin", cc: tuple[int, int] = (8, 7)) -> None:
        super().__init__("pycuda.driver")
        self.gpu_name, self.cc = gpu_name, cc
        self.memory: dict[int, np.ndarray] = {}
        self._next = 0x10000
        self._local = threading.local()
        self.initialised = False
        fake = self

        class Device:
            def __init__(self, index: int) -> None:
                if not fake.initialised:
                    raise RuntimeError("cuInit has not been called")
                if index != 0:
                    raise RuntimeError(f"invalid device ordinal {index}")

            def name(self) -> str:
                return fake.gpu_name

            def compute_capability(self) -> tuple[int, int]:
                return fake.cc

            def retain_primary_context(self) -> "Context":
                return Context()

        class Context:
            def push(self) -> None:
                fake._stack().append(self)

            def pop(self) -> None:
                fake._stack().pop()

            def detach(self) -> None:
                pass

        class Stream:
            handle = 0xBEEF

            def synchronize(self) -> None:
                fake.require_context()

        class DeviceAllocation:
            def __init__(self, nbytes: int) -> None:
                fake.require_context()
                self.ptr = fake._next
                fake._next += max(nbytes, 1) + 256
                fake.memory[self.ptr] = np.zeros(nbytes, np.uint8)

            def __int__(self) -> int:
                return self.ptr

            def free(self) -> None:
                fake.memory.pop(self.ptr, None)

        self.Device, self.Context, self.Stream, self.DeviceAllocation = Device, Context, Stream, DeviceAllocation

    def _stack(self) -> list:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def require_context(self) -> None:
        if not self._stack():
            raise RuntimeError("no CUDA context is current on this thread")

    def init(self) -> None:
        self.initialised = True

    def pagelocked_empty(self, n: int, dtype: Any) -> np.ndarray:
        self.require_context()
        return np.empty(n, dtype)

    def mem_alloc(self, nbytes: int) -> Any:
        return self.DeviceAllocation(nbytes)

    def memcpy_htod(self, dev: Any, host: np.ndarray) -> None:
        self.require_context()
        raw = np.ascontiguousarray(host).view(np.uint8).ravel()
        self.memory[int(dev)][: raw.size] = raw

    def memcpy_htod_async(self, dev: Any, host: np.ndarray, stream: Any) -> None:
        self.memcpy_htod(dev, host)

    def memcpy_dtoh_async(self, host: np.ndarray, dev: Any, stream: Any) -> None:
        self.require_context()
        flat = host.reshape(-1).view(np.uint8)
        flat[:] = self.memory[int(dev)][: flat.size]

    def read(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.memory[ptr][:n].view(dtype).reshape(shape).copy()

    def write(self, ptr: int, arr: np.ndarray) -> None:
        raw = np.ascontiguousarray(arr).view(np.uint8).ravel()
        self.memory[ptr][: raw.size] = raw


def pycuda_package(cuda: FakeCuda) -> types.ModuleType:
    pkg = types.ModuleType("pycuda")
    pkg.driver = cuda  # type: ignore[attr-defined]
    return pkg


# ---------------------------------------------------------------- tensorrt


class FakeTensorRT(types.ModuleType):
    """The slice of the tensorrt module that export/engine.py and edge/trt_backend.py use."""

    def __init__(self, cuda: FakeCuda, version: str = "10.3.0") -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.cuda = cuda
        self.built: list[dict] = []  # what each build was asked for
        trt = self

        class ILogger:
            Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

            def __init__(self) -> None:
                pass

        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        self.ILogger = ILogger
        self.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
        self.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        self.DataType = types.SimpleNamespace(**{k: k for k in _NP})

        class Builder:
            def __init__(self, logger: Any) -> None:
                self.logger = logger
                self.platform_has_fast_fp16 = True

            def create_network(self, flags: int) -> "Network":
                if int(trt.__version__.split(".")[0]) < 10 and flags != 1:
                    raise AssertionError("TensorRT 8 ONNX parsing needs the EXPLICIT_BATCH flag")
                return Network()

            def create_builder_config(self) -> "Config":
                return Config()

            def create_optimization_profile(self) -> "Profile":
                return Profile()

            def build_serialized_network(self, network: "Network", config: "Config") -> bytes | None:
                return trt._build(self, network, config)

        class Network:
            def __init__(self) -> None:
                self.inputs: list[types.SimpleNamespace] = []
                self.onnx_bytes = b""

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            def get_input(self, i: int) -> types.SimpleNamespace:
                return self.inputs[i]

        class ParserError:
            def __init__(self, node: int, desc: str, name: str, op: str) -> None:
                self._node, self._desc, self._name, self._op = node, desc, name, op

            def node(self) -> int:
                return self._node

            def desc(self) -> str:
                return self._desc

            def code(self) -> str:
                return "ErrorCode.UNSUPPORTED_NODE"

            def node_name(self) -> str:
                return self._name

            def node_operator(self) -> str:
                return self._op

        class OnnxParser:
            SUPPORTED = {"Shape", "Gather", "Range", "Unsqueeze", "Cast", "Less", "Mul", "ReduceSum", "Div", "MatMul", "Tanh", "Flatten", "Relu"}

            def __init__(self, network: Network, logger: Any) -> None:
                self.network, self.errors = network, []

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> ParserError:
                return self.errors[i]

            def parse_from_file(self, path: str) -> bool:
                try:
                    model = onnx.load(path)
                except Exception as exc:  # noqa: BLE001 - the real parser reports, never raises
                    self.errors.append(ParserError(-1, f"cannot read {path}: {exc}", "", ""))
                    return False
                for i, node in enumerate(model.graph.node):
                    if node.op_type not in self.SUPPORTED:
                        self.errors.append(ParserError(i, f"no importer for op {node.op_type}", node.name, node.op_type))
                if self.errors:
                    return False
                init = {t.name for t in model.graph.initializer}
                for vi in model.graph.input:
                    if vi.name not in init:
                        dtype = _ONNX_TO_TRT[vi.type.tensor_type.elem_type]
                        self.network.inputs.append(types.SimpleNamespace(name=vi.name, dtype=dtype, is_shape_tensor=False))
                self.network.onnx_bytes = model.SerializeToString()
                return True

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple] = {}

            def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
                if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                    raise AssertionError(f"profile for {name}: min <= opt <= max violated")
                self.shapes[name] = (list(lo), list(opt), list(hi))

        class TimingCache:
            def __init__(self, data: bytes) -> None:
                self.data = bytes(data)

            def serialize(self) -> bytes:
                return self.data

        class Config:
            def __init__(self) -> None:
                self.flags: set[str] = set()
                self.profiles: list[Profile] = []
                self.calibration_profile: Profile | None = None
                self.int8_calibrator: Any = None
                self.workspace = 0
                self.cache: TimingCache | None = None
                self.loaded_cache = b""

            def set_memory_pool_limit(self, pool: str, nbytes: int) -> None:
                self.workspace = nbytes

            def set_flag(self, flag: str) -> None:
                self.flags.add(flag)

            def add_optimization_profile(self, profile: Profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def set_calibration_profile(self, profile: Profile) -> bool:
                self.calibration_profile = profile
                return True

            def create_timing_cache(self, data: bytes) -> TimingCache:
                return TimingCache(data)

            def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
                self.cache, self.loaded_cache = cache, cache.data
                return True

            def get_timing_cache(self) -> TimingCache:
                return self.cache or TimingCache(b"")

        class Runtime:
            def __init__(self, logger: Any) -> None:
                self.logger = logger

            def deserialize_cuda_engine(self, data: bytes) -> "Engine | None":
                trt.cuda.require_context()
                if not bytes(data).startswith(MAGIC):
                    self.logger.log(ILogger.Severity.ERROR, "engine plan file is corrupt")
                    return None
                header, model = bytes(data)[len(MAGIC) :].split(b"\n", 1)
                return Engine(json.loads(header), model)

        class Engine:
            def __init__(self, header: dict, model: bytes) -> None:
                self.header = header
                self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
                self.names = list(header["inputs"]) + ["embeddings"]

            @property
            def num_io_tensors(self) -> int:
                return len(self.names)

            def get_tensor_name(self, i: int) -> str:
                return self.names[i]

            def get_tensor_mode(self, name: str) -> str:
                return "INPUT" if name in self.header["inputs"] else "OUTPUT"

            def get_tensor_dtype(self, name: str) -> str:
                return self.header["inputs"].get(name, "FLOAT")

            def is_shape_inference_io(self, name: str) -> bool:
                return False

            def get_tensor_profile_shape(self, name: str, index: int) -> list[list[int]]:
                return self.header["profile"][name]

            def create_execution_context(self) -> "Context":
                return ExecContext(self)

        class ExecContext:
            def __init__(self, engine: Engine) -> None:
                self.engine, self.shapes, self.addresses = engine, {}, {}
                self.runs = 0

            def set_input_shape(self, name: str, shape: tuple) -> bool:
                lo, _, hi = self.engine.header["profile"][name]
                if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                    return False
                self.shapes[name] = tuple(shape)
                return True

            def get_tensor_shape(self, name: str) -> tuple:
                if name in self.shapes:
                    return self.shapes[name]
                batch = next(iter(self.shapes.values()))[0]
                return (batch, self.engine.header["embedding_dim"])

            def set_tensor_address(self, name: str, ptr: int) -> None:
                self.addresses[name] = int(ptr)

            def execute_async_v3(self, stream_handle: int) -> bool:
                trt.cuda.require_context()
                missing = [n for n in self.engine.names if n not in self.addresses]
                if missing or set(self.shapes) != set(self.engine.header["inputs"]):
                    raise AssertionError(f"execute before every address and input shape was set (missing {missing})")
                feeds = {}
                for name, dt in self.engine.header["inputs"].items():
                    feeds[name] = trt.cuda.read(self.addresses[name], self.shapes[name], _NP[dt])
                    if name == "lengths":
                        feeds[name] = feeds[name].astype(np.int32)
                (out,) = self.engine.session.run(["embeddings"], feeds)
                trt.cuda.write(self.addresses["embeddings"], out.astype(np.float32))
                self.runs += 1
                return True

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime

    @staticmethod
    def nptype(dtype: str) -> Any:
        return _NP[dtype]

    def _build(self, builder: Any, network: Any, config: Any) -> bytes | None:
        if not config.profiles:
            builder.logger.log(self.ILogger.Severity.ERROR, "network has dynamic inputs but no optimization profile")
            return None
        profile = config.profiles[0].shapes
        missing = [t.name for t in network.inputs if t.name not in profile]
        if missing:
            builder.logger.log(self.ILogger.Severity.ERROR, f"no profile shapes for {missing}")
            return None
        calibrated = 0
        if "INT8" in config.flags:
            cal = config.int8_calibrator
            if config.calibration_profile is None or cal is None:
                builder.logger.log(self.ILogger.Severity.ERROR, "INT8 without calibrator or calibration profile")
                return None
            if cal.read_calibration_cache() is None:
                names = [t.name for t in network.inputs]
                while True:
                    pointers = cal.get_batch(names)
                    if pointers is None:
                        break
                    for name, ptr in zip(names, pointers):
                        shape = config.calibration_profile.shapes[name][1]
                        arr = self.cuda.read(ptr, tuple(shape), _NP[next(t.dtype for t in network.inputs if t.name == name)])
                        assert np.isfinite(arr).all()
                    calibrated += 1
                cal.write_calibration_cache(b"fake calibration table")
        config.cache = type(config.cache)(config.loaded_cache + b"+build") if config.cache else None
        self.built.append({"flags": sorted(config.flags), "profile": profile, "workspace": config.workspace, "calibration_batches": calibrated})
        dim = onnx.load_from_string(network.onnx_bytes).graph.output[0].type.tensor_type.shape.dim[1].dim_value
        header = {
            "inputs": {t.name: t.dtype for t in network.inputs},
            "profile": profile,
            "embedding_dim": dim,
        }
        return MAGIC + json.dumps(header).encode() + b"\n" + network.onnx_bytes
