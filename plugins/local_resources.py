"""The ``local`` resource manager: one machine's threads, device, memory and admission.

torch is configured only when a component declares ``uses_torch``, and imported only
then, so systems without torch models never load it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import importlib.util
import logging
import os
import re
import threading
import time
from typing import Any

import attrs

import heirloom

log = logging.getLogger("heirloom.resources")

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: Seconds between two attempts to give memory back while past the budget (a gc pass holds the I/O thread).
_RELEASE_INTERVAL = 1.0
#: Seconds past the budget with nothing in flight before the process says it is stuck: what a flood's messages and
#: refusals hold (no request in flight holds them) is freed within seconds of it, and a daemon said it could never
#: admit again, and was not ready, 4 times in one flood it then recovered from by itself (checker h435 F1).
STUCK_AFTER_S = 10.0


def _device(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _DEVICE.match(value):
        raise ValueError(f"'{attribute.name}' must be auto, cpu, cuda or cuda:N, got {value!r}")


def _import_whole(module: str) -> None:
    """Import ``module`` on a helper thread: a Ctrl-C during a first import of seconds (a notebook's interrupted
    start) stops the wait, not the import, which a KeyboardInterrupt inside torch's left half done, so the next
    start failed ('partially initialized module') or crashed the process (checker h417 F2)."""
    importer = threading.Thread(target=importlib.import_module, args=(module,), name=f"import {module}", daemon=True)
    importer.start()
    importer.join()


def _device_present(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """``profile check`` refuses a CUDA device torch cannot see (checked only where torch is
    installed: a machine that only checks profiles need not have it)."""
    if not value.startswith("cuda") or importlib.util.find_spec("torch") is None:
        return
    import torch

    index = int(value.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        seen = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise ValueError(f"'{attribute.name}' is {value!r} but torch {torch.__version__} sees {seen}")


def resident_mb() -> float:
    """This process's resident memory in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def _statm_pages(fd: int) -> int:
    """Resident pages from an open ``/proc/self/statm`` (one pread, about 3 us: cheap enough per request)."""
    return int(os.pread(fd, 128, 0).split()[1])


@functools.cache
def _glibc_trim() -> Any:
    """glibc's ``malloc_trim``, which hands the freed parts of the heap back to the system (freed
    memory otherwise stays resident: 572 MiB after a burst of heavy bodies, 252 MiB idle); None elsewhere."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Give back what this process can: a full gc pass, then the heap's free pages (glibc)."""
    gc.collect()
    if (trim := _glibc_trim()) is not None:
        trim(0)


#: Most intra-op threads asked for: far past any machine's cores (torch refuses sizes past
#: a C int; the operating system runs out of threads much sooner).
MAX_THREADS = 1024


@attrs.define
class LocalResources(heirloom.Resources):
    """Threads, device and admission control for one process on one machine."""

    #: Intra-op threads for torch; 0 uses every core the process may run on (a local worker
    #: of ``serve --workers N``: its share of them, ``heirloom.cpu_share()``).
    threads: int = attrs.field(default=0, validator=[heirloom.at_least(0), attrs.validators.le(MAX_THREADS)])
    #: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (the first GPU when one is present).
    device: str = attrs.field(default="cpu", validator=[_device, _device_present])
    #: Requests admitted at once, by the whole daemon (with ``--workers N`` the broker counts
    #: across workers); more are refused with RESOURCE_EXHAUSTED. 0: no limit.
    max_in_flight: int = attrs.field(default=1024, validator=heirloom.at_least(0))
    #: Refuse new requests while resident memory exceeds this many MiB, per process (each
    #: worker checks its own, at each admission); 0: no limit. Size it from the peak under load.
    memory_budget_mb: int = attrs.field(default=0, validator=heirloom.mebibytes(zero_allowed=True))
    #: MiB the project may keep in the artifact store, and in its durable logs (feedback,
    #: events); a write past either is refused whole. 0: no quota.
    artifact_quota_mb: int = attrs.field(default=0, validator=heirloom.mebibytes(zero_allowed=True))
    log_quota_mb: int = attrs.field(default=0, validator=heirloom.mebibytes(zero_allowed=True))
    #: After each train keep the newest N versions per model (aliased ones and ancestors of
    #: kept ones always stay); 0 keeps every version.
    keep_versions: int = attrs.field(default=0, validator=heirloom.at_least(0))
    #: Per client (Curve key, else connection): sustained requests and bytes per second,
    #: with bursts of ``client_burst_s`` seconds' worth; 0: no limit.
    client_requests_per_s: float = attrs.field(default=0.0, validator=heirloom.at_least(0))
    client_bytes_per_s: float = attrs.field(default=0.0, validator=heirloom.at_least(0))
    client_burst_s: float = attrs.field(default=1.0, validator=heirloom.above(0))

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self._in_flight = [0]  # a cell: attrs' __setattr__ hook would run on every += otherwise
        self._torch_configured = False
        self._resolved_device: str | None = None
        self._memory_ok = True
        self._memory_resident = 0.0  # MiB at the last check, named in refusals
        self._released = float("-inf")  # when memory was last given back (monotonic)
        #: Why this process can never admit again (past the budget with nothing in flight), else None.
        self._stuck: str | None = None
        self._idle_past_since: float | None = None  # since when past the budget with nothing in flight (monotonic)
        self._ever_within = False  # never within the budget since start: no flood to wait out, a budget below idle
        self._statm: int | None = None
        self._memory_lock = threading.Lock()  # the I/O thread admits; /metrics' thread asks ready() too
        if self.memory_budget_mb and os.path.exists("/proc/self/statm"):
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)

    def stop(self) -> None:
        if getattr(self, "_statm", None) is not None:
            with self._memory_lock:
                os.close(self._statm)
                self._statm = None

    def ready(self) -> bool:
        """False while past the memory budget with nothing in flight: no request can finish and
        free memory, so none is admitted again, and an orchestrator should restart the process."""
        return not (self.memory_budget_mb and not self._memory_within_budget() and self._stuck)

    def effective_threads(self) -> int:
        """``threads``, or this process's share of the cores when it is 0."""
        return self.threads or heirloom.cpu_share()

    def prepare(self, name: str, component: heirloom.Component) -> None:
        if component.uses_torch and not self._torch_configured:
            _import_whole("torch")  # only systems with torch components pay for it
            import torch

            torch.set_num_threads(self.effective_threads())
            self._torch_configured = True

    def device_for(self, name: str) -> str:
        if self._resolved_device is None:
            if self.device == "auto":
                import torch

                self._resolved_device = "cuda:0" if torch.cuda.is_available() else "cpu"
            elif self.device.startswith("cuda"):
                import torch

                if not torch.cuda.is_available():
                    raise heirloom.HeirloomError(f"resources.device = {self.device!r} but torch sees no CUDA device")
                self._resolved_device = self.device if ":" in self.device else "cuda:0"
            else:
                self._resolved_device = self.device
        return self._resolved_device

    def admit(self) -> bool:
        # the daemon calls admit and release from its I/O thread only: no lock needed
        if self.memory_budget_mb and not self._memory_within_budget():
            raise heirloom.ResourceExhaustedError(self._past_budget(self._memory_resident))
        count = self._in_flight
        if self.max_in_flight and count[0] >= self.max_in_flight:
            held = f"this process has {count[0]} requests in flight"
            raise heirloom.ResourceExhaustedError(f"resources.max_in_flight ({self.max_in_flight}) reached: {held}")
        count[0] += 1
        return True

    def release(self) -> None:
        count = self._in_flight
        if count[0] > 0:
            count[0] -= 1

    def daemon_in_flight_limit(self) -> int | None:
        return self.max_in_flight or None

    def check_memory(self, what: str) -> None:
        if self.memory_budget_mb and (resident := resident_mb()) > self.memory_budget_mb:
            raise heirloom.ResourceExhaustedError(
                f"{what}: {self._past_budget(resident)}; raise the budget or train on a machine with more memory"
            )

    def _past_budget(self, resident: float) -> str:
        """What a refusal, a stopped training and the serving log line all say past the budget."""
        return f"this process holds {resident:.0f} MiB, past resources.memory_budget_mb = {self.memory_budget_mb}"

    def storage_quota_mb(self, area: str) -> int | None:
        return {"artifacts": self.artifact_quota_mb, "logs": self.log_quota_mb}.get(area) or None

    def retention(self) -> int | None:
        return self.keep_versions or None

    def client_limits(self) -> heirloom.ClientLimits | None:
        if not (self.client_requests_per_s or self.client_bytes_per_s):
            return None
        return heirloom.ClientLimits(self.client_requests_per_s, self.client_bytes_per_s, self.client_burst_s)

    def _memory_within_budget(self) -> bool:
        """Whether resident memory is within the budget, read at each admission (sampling it every
        0.1 s let a burst of heavy requests take a process to twice its budget). Past it, what the
        process holds but does not use is given back first (at most once a second) and measured again."""
        with self._memory_lock:
            resident = self._resident()
            if resident > self.memory_budget_mb and time.monotonic() - self._released >= _RELEASE_INTERVAL:
                resident = self._release()
            self._memory_resident = resident
            within = resident <= self.memory_budget_mb
            if within:  # a spell past the budget ended: the next one is timed from its own start (v34 F2)
                self._idle_past_since, self._ever_within = None, True
            if within != self._memory_ok:  # said when it turns, not per refusal
                if within:
                    self._stuck = None
                    log.info("this process holds %.0f MiB, within resources.memory_budget_mb = %d: admitting "
                             "requests again", resident, self.memory_budget_mb)  # fmt: skip
                else:
                    log.warning("%s: refusing new requests (RESOURCE_EXHAUSTED)", self._past_budget(resident))
            self._memory_ok = within
            return within

    def _release(self) -> float:
        """Give memory back and measure again; still past the budget with nothing in flight (no
        request left to finish and free some), the process is stuck: said once, and by ``ready``. For 10 s on end
        (a flood's own messages are freed within seconds), or at once when it never was within the budget since it
        started: ready and refusing everything, it let a readiness probe pass for 10 s (checker h454 F1)."""
        self._released = now = time.monotonic()
        release_memory()
        resident, was_stuck, since = self._resident(), self._stuck, self._idle_past_since or now
        self._stuck = None
        if resident <= self.memory_budget_mb or self._in_flight[0]:
            self._idle_past_since = None
        elif self._ever_within and now - since < STUCK_AFTER_S:
            self._idle_past_since = since
        else:
            spell = (
                f"for {now - since:.0f} s" if self._ever_within else "since it started (a budget below its idle size)"
            )
            held = f"{self._past_budget(resident)} with no request in flight {spell}"
            self._stuck = f"{held}, after giving back what it could"
            if was_stuck is None:
                log.error("%s: it admits no request until its memory falls within the budget, and says it is not "
                          "ready (_ready) meanwhile; if it stays so, restart it with a budget sized from its peak "
                          "under load (docs/OPERATIONS.md)", self._stuck)  # fmt: skip
        return resident

    def _resident(self) -> float:
        return resident_mb() if self._statm is None else _statm_pages(self._statm) * _PAGE / 2**20

    def usage(self) -> dict[str, Any]:
        return {
            "threads": self.effective_threads(),
            "device": self._resolved_device or self.device,
            "in_flight": self._in_flight[0],
            "max_in_flight": self.max_in_flight,
            "resident_mb": round(resident_mb(), 1),
            "memory_budget_mb": self.memory_budget_mb,
            "not_ready": self._stuck,
        }


@heirloom.hookimpl
def heirloom_register_resource_managers(register):
    register("local", LocalResources)
