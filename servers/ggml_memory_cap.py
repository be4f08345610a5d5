"""A cap on the memory a ggml RPC lender lends: what its server may allocate, and what it reports.

Why patch ggml's structs: its RPC server has no memory option (v7 takes
devices; it answers `GET_DEVICE_MEMORY` from the CPU device, which reports the
machine's RAM, and allocates every buffer a host asks for). So, in the lender's
own process only, two function pointers of ggml's static structs of the lent
device (the CPU, or a GPU) are replaced: the device's `get_memory` reports the
cap and what is left of it, and its buffer type's `alloc_buffer` refuses a buffer that would go past the
cap (the host then fails its load with "unable to allocate" instead of the
lender eating the machine). Each buffer granted gets our `free_buffer` in its
own copy of the buffer interface, so what it held is given back when it goes.

Message buffers (one tensor at a time while a host uploads weights) are not
buffers of the backend and are not counted.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from servers.ggml_rpc import ggml_library

__all__ = ["MemoryCap"]

# Offsets, in pointers, into ggml-backend-impl.h's structs (llama-cpp-python 0.3.36's ggml).
_DEVICE_GET_MEMORY = 2  # struct ggml_backend_device: iface {get_name, get_description, get_memory, ...}
_BUFT_ALLOC_BUFFER = 1  # struct ggml_backend_buffer_type: iface {get_name, alloc_buffer, ...}
_BUFFER_FREE = 0  # struct ggml_backend_buffer: iface {free_buffer, ... 11 functions}, buft, context, size
_BUFFER_SIZE = 13

_GetMemory = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t))
_AllocBuffer = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FreeBuffer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class MemoryCap:
    """Installed once per lender process on the device it serves (`ggml_rpc.lend_device()`)."""

    def __init__(self, limit: int, device: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()
        self._held: dict[int, tuple[int, int]] = {}  # buffer -> (its size, ggml's own free function)
        lib = ggml_library()
        self.device = device
        buffer_type = ctypes.cast(lib.ggml_backend_dev_buffer_type(device), ctypes.POINTER(ctypes.c_void_p))
        self._ggml_alloc = _AllocBuffer(buffer_type[_BUFT_ALLOC_BUFFER])
        # ggml calls these for the rest of the process's life: they live on this object, which the server keeps.
        self._callbacks = (_GetMemory(self._get_memory), _AllocBuffer(self._alloc), _FreeBuffer(self._free))
        ctypes.cast(self.device, ctypes.POINTER(ctypes.c_void_p))[_DEVICE_GET_MEMORY] = _address(self._callbacks[0])
        buffer_type[_BUFT_ALLOC_BUFFER] = _address(self._callbacks[1])

    def _get_memory(self, _device: int, free: Any, total: Any) -> None:
        free[0], total[0] = max(0, self.limit - self.used), self.limit

    def _alloc(self, buffer_type: int, size: int) -> int | None:
        with self._lock:
            if self.used + size > self.limit:
                return None  # ggml reports a failed allocation to the host
            self.used += size  # reserved before allocating, so two allocations cannot both pass
        buffer = self._ggml_alloc(buffer_type, size)
        with self._lock:
            if not buffer:
                self.used -= size
                return None
            fields = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_void_p))
            self.used += (fields[_BUFFER_SIZE] or 0) - size  # the size ggml really gave (aligned)
            if fields[_BUFFER_FREE]:
                self._held[buffer] = (fields[_BUFFER_SIZE] or 0, fields[_BUFFER_FREE])
                fields[_BUFFER_FREE] = _address(self._callbacks[2])
        return int(buffer)

    def _free(self, buffer: int) -> None:
        with self._lock:
            size, ggml_free = self._held.pop(buffer)
            self.used -= size
        _FreeBuffer(ggml_free)(buffer)


def _address(callback: Any) -> int:
    return int(ctypes.cast(callback, ctypes.c_void_p).value or 0)
