"""ggml's RPC backend through ctypes: serve this machine's compute, or use another's, plus a wire-level probe.

Why ctypes and not llama-cpp-python's bindings: they do not wrap ggml-rpc.h. The
functions are looked up through the ggml that llama-cpp-python already loaded
(dlsym on libllama's handle searches its dependencies), never by loading
`libggml.so` by path: the wheel ships `libggml.so`, `.so.0` and `.so.0.x.y` as
separate files, so a path load gives a second ggml whose devices libllama never
sees (the model silently stays local while the log says "offloaded").

The RPC functions are not exported by name; ggml hands them out through the RPC
backend's `get_proc_address`, as llama.cpp's own `rpc-server` and `common/arg.cpp` do.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import socket
import struct
from typing import Any

__all__ = [
    "PROTOCOL_MAJOR",
    "RpcUnavailable",
    "LenderUnreachable",
    "add_server",
    "check_loopback",
    "device_name",
    "ggml_library",
    "lend_device",
    "local_gpu_present",
    "probe",
    "start_server",
    "supports_rpc",
]

PROTOCOL_MAJOR = 7
"""ggml-rpc.h's RPC_PROTO_MAJOR_VERSION of the pinned llama-cpp-python (0.3.36); a lender and a host must agree."""

_CMD_HELLO = 14
_CONN_CAPS_SIZE = 24  # ggml-rpc/transport.h
_DEVICE_TYPE_GPU = 1  # enum ggml_backend_dev_type: CPU, GPU, IGPU, ACCEL



class RpcUnavailable(RuntimeError):
    """This llama-cpp-python was built without `-DGGML_RPC=ON`."""


class LenderUnreachable(ConnectionError):
    """An endpoint does not answer as a ggml RPC server of our protocol version; the message says which and why."""


def supports_rpc() -> bool:
    """Whether llama.cpp was built with the RPC backend (False, not an error, when llama_cpp is missing)."""
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_rpc())


@functools.cache
def ggml_library() -> Any:
    """libllama's ctypes handle: its dlsym reaches the one ggml libllama uses (see the module docstring)."""
    import llama_cpp.llama_cpp

    lib = llama_cpp.llama_cpp._lib
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "ggml_backend_reg_by_name": (ctypes.c_void_p, [ctypes.c_char_p]),
        "ggml_backend_reg_get_proc_address": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
        "ggml_backend_reg_name": (ctypes.c_char_p, [ctypes.c_void_p]),
        "ggml_backend_register": (None, [ctypes.c_void_p]),
        "ggml_backend_dev_count": (ctypes.c_size_t, []),
        "ggml_backend_dev_get": (ctypes.c_void_p, [ctypes.c_size_t]),
        "ggml_backend_dev_type": (ctypes.c_int, [ctypes.c_void_p]),
        "ggml_backend_dev_backend_reg": (ctypes.c_void_p, [ctypes.c_void_p]),
        "ggml_backend_dev_by_type": (ctypes.c_void_p, [ctypes.c_int]),
        "ggml_backend_dev_name": (ctypes.c_char_p, [ctypes.c_void_p]),
        "ggml_backend_dev_buffer_type": (ctypes.c_void_p, [ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


def _rpc_function(name: str, prototype: Any) -> Any:
    if not supports_rpc():
        raise RpcUnavailable(
            "this llama-cpp-python has no RPC backend; rebuild it with CMAKE_ARGS including -DGGML_RPC=ON (make does, see README)."
        )
    lib = ggml_library()
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    address = lib.ggml_backend_reg_get_proc_address(reg, name.encode()) if reg else None
    if not address:
        raise RpcUnavailable(f"ggml's RPC backend does not offer {name}; llama-cpp-python and this code disagree on its version.")
    return prototype(address)


def _local_gpus() -> list[int]:
    """The real local GPUs registered with ggml, in ggml's order (RPC devices count as GPUs to ggml: skipped)."""
    lib = ggml_library()
    gpus = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        if lib.ggml_backend_dev_type(device) != _DEVICE_TYPE_GPU:
            continue
        reg = lib.ggml_backend_dev_backend_reg(device)
        if not (reg and (lib.ggml_backend_reg_name(reg) or b"").startswith(b"RPC")):
            gpus.append(int(device))
    return gpus


def local_gpu_present() -> bool:
    """Whether a real local GPU is registered with ggml.

    `llama_supports_gpu_offload()` also turns True when RPC is compiled in (RPC
    devices count as GPUs), so `--gpu-layers auto` asks the device list instead.
    """
    try:
        return bool(_local_gpus())
    except ImportError:
        return False


def lend_device() -> int:
    """The device a lender serves: the first local GPU if ggml has one (it computes faster than the CPU), else the CPU."""
    gpus = _local_gpus()
    return gpus[0] if gpus else int(ggml_library().ggml_backend_dev_by_type(0))


def device_name(device: int) -> str:
    """ggml's name of `device`, lower case ("cpu", "cuda0"): what a lender's card says it lends."""
    return (ggml_library().ggml_backend_dev_name(device) or b"?").decode(errors="replace").lower()


def add_server(endpoint: str) -> list[int]:
    """Register the RPC server at `endpoint` as ggml devices; returns their addresses (for `llama_model_params.devices`).

    `add_server` alone does not register the devices: `ggml_backend_register` must
    follow, as in llama.cpp's common/arg.cpp. An unreachable endpoint ABORTS the
    process inside ggml: `probe` it first, and do this only in a disposable child.
    """
    add = _rpc_function("ggml_backend_rpc_add_server", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p))
    lib = ggml_library()
    before = lib.ggml_backend_dev_count()
    reg = add(endpoint.encode())
    if not reg:
        raise LenderUnreachable(f"the RPC server at {endpoint} offers no device; restart that lender.")
    lib.ggml_backend_register(reg)
    return [int(lib.ggml_backend_dev_get(i)) for i in range(before, lib.ggml_backend_dev_count())]


def check_loopback(host: str) -> None:
    """Refuse any bind address but an IPv4 loopback one: ggml's RPC has no authentication or encryption."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise ValueError(
            f"refusing to serve ggml RPC on {host!r}: it has no authentication, so a lender binds 127.0.0.1 only "
            "and is reached through the mesh's authenticated tunnel."
        )


def start_server(endpoint: str, cache_dir: str | None, n_threads: int, mem_bytes: int, device: int) -> None:
    """Serve `device` (`lend_device()`) as a ggml RPC device at `endpoint` (loopback only); blocks until ggml gives up (a bind failure).

    Hosts may allocate `mem_bytes` in all on it, and it reports that as its
    memory (`servers.ggml_memory_cap`: ggml's server has no such option). Call it
    on a thread: it never returns while it serves, and ggml has no stop function.
    """
    host, _, _ = endpoint.rpartition(":")
    check_loopback(host)
    start = _rpc_function(
        "ggml_backend_rpc_start_server",
        ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)),
    )
    from servers.ggml_memory_cap import MemoryCap  # it patches ggml's CPU structs: only ever in a lender

    cap = MemoryCap(mem_bytes, device)
    devices = (ctypes.c_void_p * 1)(cap.device)
    start(endpoint.encode(), cache_dir.encode() if cache_dir else None, n_threads, 1, devices)


def probe(endpoint: str, timeout: float = 2.0) -> None:
    """Check that `endpoint` answers ggml RPC's HELLO with our protocol version; `LenderUnreachable` says why not.

    Done on the wire, in Python, because ggml ABORTS the process on an
    unreachable server or a failed handshake. A lender serves one host at a
    time: while it serves another, the connection is accepted but HELLO waits,
    and this reports it busy after `timeout`.
    """
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack("<BQ", _CMD_HELLO, _CONN_CAPS_SIZE) + bytes(_CONN_CAPS_SIZE))
            size = struct.unpack("<Q", _receive(sock, 8))[0]
            reply = _receive(sock, size) if 3 <= size <= 64 else b""
    except TimeoutError as exc:
        raise LenderUnreachable(f"the lender at {endpoint} did not answer within {timeout:g} s (busy serving another host?); try another lender.") from exc
    except (OSError, ValueError) as exc:
        raise LenderUnreachable(f"cannot reach the lender at {endpoint}: {exc}; check it is running, or place its layers elsewhere.") from exc
    if len(reply) < 3 or reply[0] != PROTOCOL_MAJOR:
        version = ".".join(str(b) for b in reply[:3]) or "no valid HELLO"
        raise LenderUnreachable(f"the lender at {endpoint} speaks ggml RPC {version}, not {PROTOCOL_MAJOR}.x; run the same llama-cpp-python on both.")


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed during the handshake")
        data += chunk
    return data
