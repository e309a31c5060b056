"""run_cell: the only place that seeds, times, measures memory and turns errors into statuses.

Each cell runs in its own process: a crash, a kill or an out-of-memory cannot take the matrix down, and peak
memory is the cell's own. The processes are forked from a multiprocessing fork server that has imported torch,
transformers, peft, timm and the registries once (``PRELOAD``): a fresh interpreter spends ~10 s on those imports,
which dominated small cells. Nothing else is shared: the fork server never touches a device or a thread pool, and
each child receives the parent's current environment. Before the process starts, the parent checks what a user
can get wrong (names, settings, budget against the pool, data files: ``check_inputs``) and raises, writing no
record. The child writes the record; if it dies without doing so, the parent writes one whose status says how
(``killed`` by a named signal, ``oom``, ``timeout``, ``failed``) with the exit code and the end of its stderr, so
a failed cell is a record, never a silent gap. Inside the child, in this order: seed everything and fix the thread
count; load the pretrained backbone; probe the untouched base model (forgetting baseline); prepare the method;
count parameters; train with validation-based selection inside the memory window; evaluate test once; probe the
adapted backbone; write the record.

What the cell prints on stdout (the loop's line per validation pass, ``step 16/64  train_loss 0.512  val/accuracy
0.8120  (best)``) reaches the caller live through a file: with ``on_line``, the parent creates ``stdout.txt`` in the
cell's temporary folder, the child points its file descriptor 1 at it (append mode), and a thread in the parent
(``FollowLines``) reads what was appended every 0.2 s and hands each complete line to ``on_line``. A file, not a
pipe, because the child is forked by the fork server (it cannot inherit a pipe the parent opens now), because a
child that prints faster than the parent reads never blocks on a full pipe, and because whatever the child wrote
before it died is still there to read. Without ``on_line`` the child's stdout is the fork server's (the terminal
of ``adaptbench run``), or /dev/null with ``quiet``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.catalog import probe_files, resolve
from bench.core.api import Cell, Resolved
from bench.core.data import DataError, DataRoot
from bench.core.record import Cost, Divergence, Record, Retry, new_record
from bench.core.store import Store
from bench.run.cell import execute
from bench.run.limits import is_memory_fault, memory_fault_text
from bench.run.meters import pick_device

DEFAULT_TIMEOUT_S = 3600
ERROR_TAIL = 4000
STOP_WAIT_S = 2.0  # how long a cell ended by Ctrl-C waits for its grid to say it is stopping (see InFlight)
METER_EVERY_S = 1.0  # how often a cell's process writes what it has measured so far (see _watch)
# imported once in the fork server, so each cell's process starts with them loaded
PRELOAD = [
    "bench.run.preload",
    "torch",
    "transformers",
    "peft",
    "timm",
    "sklearn.metrics",
    "scipy.stats",
    "bench.run.harness",
    "bench.run.cell",
    "bench.run.loop",
    "bench.catalog",  # every task, method, backbone family and probe
]
_context_lock = threading.Lock()
_context = None


def _cell_context():
    """The fork-server context, created once per parent process (its server starts at the first cell and records
    the checkout's git state as it imports the code, see ``meters.git_info``)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


# ------------------------------------------------------------------------------------------- parent
# What an allocation failure says, in the exception or in the stderr of a process that died of one.
OOM_PATTERNS = ("MemoryError", "can't allocate memory", "out of memory", "OutOfMemoryError")


def check_inputs(res: Resolved, data: DataRoot, pool_sizes: dict[str, int] | None = None) -> None:
    """Refuse a cell whose inputs are wrong before a process starts, with one clear message: its data files (the
    task's and its backbone's probes') must be present and verified, or be downloadable now (``DataError``), and
    its budget must fit the training pool (``ValueError``). A task's declared budgets are known to fit; any other
    budget costs one load of the pool (cached in ``pool_sizes`` by task settings)."""
    for rel in dict.fromkeys([*res.task.files(), *probe_files(res.backbone)]):
        data.file(rel)  # fetches a missing file when online, then verifies its checksum; else DataError
    budget = res.cell.budget
    if budget < 0:
        raise ValueError(f"budget {budget} is negative; use a number of training examples, or 0 for the whole pool")
    res.task.preflight(budget)
    if budget == 0 or budget in res.task.spec.budgets:
        return
    ident = repr(res.task)
    sizes = pool_sizes if pool_sizes is not None else {}
    if ident not in sizes:
        sizes[ident] = len(res.task.load(data).train)
    if budget > sizes[ident]:
        raise ValueError(
            f"budget {budget} exceeds the {sizes[ident]}-example training pool of {res.cell.task}; "
            'use --budget 0 (in a suite: budgets = "task+full" or 0) for the whole pool'
        )


def check_recorded_data(res: Resolved, store: Store, seen: dict[str, str] | None = None) -> None:
    """A declared dataset whose files changed under a name that has records is refused (``DataError``): its records
    were computed on other data, and mixing them would be silently wrong. Checked once per task (``seen``)."""
    info = res.task.data_info()
    if not info:
        return
    seen = seen if seen is not None else {}
    name, now = res.cell.task, info["fingerprint"]
    if seen.get(name) == now:
        return
    for suite in store.suites():
        for record in store.records(suite):
            before = (record.dataset or {}).get("fingerprint") if record.task == name else None
            if before and before != now:
                changed = sorted(f for f, s in info["files"].items() if (record.dataset.get("files") or {}).get(f) != s)
                what = ", ".join(changed) or "the split or file list"
                raise DataError(
                    f"dataset {name}: its data changed since the records in {store.suite_dir(suite)} were made "
                    f"(content fingerprint {now[:12]}, recorded {before[:12]}; changed: {what}). Fix: if this is a new "
                    f"version of the data, give the declaration a new "
                    f"name (e.g. name = '{name}-v2'); if the old records are wrong, move them out of "
                    f"{store.suite_dir(suite)} ({name}__*.json); or restore the original file"
                )
    seen[name] = now


def run_cell(
    cell: Cell | Resolved,
    store: Store | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    quiet: bool = False,
    checked: bool = False,
    on_line: Callable[[str], None] | None = None,
    inflight: InFlight | None = None,
) -> Record:
    """Run one cell in a fresh process and return its record (also written to the store). User errors (names,
    settings, budget, missing or corrupt data) raise here, before any process starts, and write no record;
    ``checked`` says the caller (the grid) has already checked the inputs. ``on_line`` gets each line the cell
    prints on stdout while it runs (see the module docstring); ``quiet`` without it discards them.

    Stopped on purpose (Ctrl-C or SIGTERM in this thread, or ``inflight.stop()`` from another), the cell's process
    is ended and nothing is recorded for it (``CellStopped`` or the ``KeyboardInterrupt`` propagates): a cell the
    user stopped did not fail, and a rerun of the grid runs it."""
    inflight = inflight if inflight is not None else InFlight()
    if inflight.stopping.is_set():
        raise CellStopped(f"{_key(cell)}: not started, its grid is stopping")
    store = store or Store()
    # a Cell is resolved here (bad names and settings fail before any process starts); a Resolved (from the grid)
    # is used as it is, and travels to the cell's process
    res = cell if isinstance(cell, Resolved) else resolve(cell)
    reason = res.unsupported_reason()
    if reason:
        record = new_record(res, "unsupported", reason)
        store.write(record)
        return record
    if not checked:
        check_inputs(res, DataRoot.resolve(data_root))
        check_recorded_data(res, store)

    with tempfile.TemporaryDirectory(prefix="adaptbench-cell-") as tmp:
        done_file, stderr_path = Path(tmp) / "done.json", Path(tmp) / "stderr.txt"
        meter_path = Path(tmp) / "meter.json"
        stdout_path = Path(tmp) / "stdout.txt" if on_line else None
        if stdout_path:
            stdout_path.touch()  # the parent reads it from the start, while the child appends
        args = (
            res,
            str(done_file),
            device,
            str(store.root),
            str(data_root) if data_root else None,
            dict(os.environ),
            str(stderr_path),
            quiet,
            str(stdout_path) if stdout_path else None,
            os.getpid(),
            str(meter_path),
        )
        started = time.perf_counter()
        proc = _cell_context().Process(target=_child_entry, args=args, name=f"adaptbench-{res.key}")
        with FollowLines(stdout_path, on_line) if stdout_path else contextlib.nullcontext():
            try:
                proc.start()  # waits for the fork server, which may still be importing torch
                inflight.add(proc)
                proc.join(timeout_s)
            except BaseException:  # Ctrl-C or SIGTERM in this thread: end the cell now; nothing is recorded for it
                _end(proc)
                raise
            finally:
                inflight.discard(proc)
            code = proc.exitcode
            if code is None:  # still running: out of time
                proc.kill()
                proc.join()
        if done_file.exists():
            return Record.from_json(json.loads(done_file.read_text()))
        if inflight.stopped(code):
            raise CellStopped(f"{res.key}: stopped with its grid, nothing recorded")
        tail = stderr_path.read_text(errors="replace")[-ERROR_TAIL:] if stderr_path.exists() else ""
        status, error, signal_name = exit_status(code, tail, timeout_s)
        record = new_record(res, status, f"{error}\n--- stderr tail ---\n{tail}")
        record.exit_code, record.signal = code, signal_name
        record.cost = _cost_at_death(meter_path, time.perf_counter() - started)
        store.write(record)
        return record


def _key(cell: Cell | Resolved) -> str:
    return cell.key if isinstance(cell, Resolved) else cell.describe()


def _end(proc) -> None:
    """End a cell's process and reap it (it may have ended already)."""
    with contextlib.suppress(Exception):
        proc.kill()
        proc.join(10)


def _cost_at_death(meter_path: Path, wall_time_s: float) -> Cost:
    """What is known of a cell whose process died without its record (an OOM kill, a signal, a timeout): its wall
    time, and the device and process peak RSS its process last wrote (``_watch``, every second)."""
    try:
        meter = json.loads(meter_path.read_text())
    except (OSError, ValueError):
        meter = {}
    peak = meter.get("peak_rss_bytes") if isinstance(meter, dict) else None
    return Cost(
        wall_time_s=wall_time_s,
        device=meter.get("device") if isinstance(meter, dict) else None,
        peak_mem_bytes=peak,
        peak_mem_kind="process_peak_rss" if peak else None,
    )


class CellStopped(Exception):
    """A cell's process was ended because its grid is stopping (Ctrl-C, SIGTERM): no record was written."""


class InFlight:
    """The cell processes one caller runs at once (a grid's executor), so that a stopped grid can end them all and
    write nothing for them. ``stop`` kills them and refuses new ones. A SIGTERM sent to the whole process group (a
    scheduler) reaches the cells' processes too, and one of them may end a moment before the grid's main thread has
    called ``stop``: a cell ended by SIGINT or SIGTERM waits up to ``STOP_WAIT_S`` for it before it is recorded as
    ``killed`` (a signal sent to that cell alone). Cells ignore Ctrl-C (``bench.run.preload``)."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._procs: set = set()
        self._lock = threading.Lock()

    def add(self, proc) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.kill()

    def stopped(self, code: int | None) -> bool:
        """Whether a cell process that ended without its record was ended by this caller stopping."""
        if self.stopping.is_set():
            return True
        if code in (-signal.SIGINT, -signal.SIGTERM):
            return self.stopping.wait(STOP_WAIT_S)
        return False


class FollowLines:
    """While open, hands each complete line appended to ``path`` to ``on_line``, from a thread that reads every
    ``every_s`` seconds; closing reads what is left (a last line without its newline too). A line redrawn with
    carriage returns (a progress bar) counts as its last state, so no animation reaches a log."""

    def __init__(self, path: str | Path, on_line: Callable[[str], None], every_s: float = 0.2) -> None:
        self.path, self.on_line, self.every_s = Path(path), on_line, every_s
        self._file = None
        self._partial = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True, name="adaptbench-follow")

    def __enter__(self) -> FollowLines:
        self._file = open(self.path, "rb")  # closed in __exit__
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.read(final=True)
        self._file.close()

    def _follow(self) -> None:
        while not self._stop.wait(self.every_s):
            self.read()

    def read(self, final: bool = False) -> None:
        *lines, self._partial = (self._partial + self._file.read()).split(b"\n")
        redrawn = self._partial.rfind(b"\r", 0, max(0, len(self._partial) - 1))  # a bar redrawn in place
        self._partial = self._partial[redrawn + 1 :]  # keeps its last state, not every frame
        if final and self._partial:
            lines, self._partial = [*lines, self._partial], b""
        for raw in lines:
            text = raw.decode(errors="replace").rstrip().split("\r")[-1]
            if text.strip():
                self.on_line(text)


def exit_status(code: int | None, stderr_tail: str, timeout_s: float) -> tuple[str, str, str | None]:
    """(status, error, signal name) of a cell process that ended without writing its record. ``code`` is
    multiprocessing's exit code: None = still running at the time limit, negative = ended by that signal."""
    if code is None:
        return "timeout", f"cell exceeded {timeout_s:.0f} s and was killed", "SIGKILL"
    oom = any(p in stderr_tail for p in OOM_PATTERNS)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if oom:
            return "oom", f"cell process ran out of memory and was ended by {name}", name
        hint = " (by a user, a scheduler, or the kernel's OOM killer when memory ran out)" if name == "SIGKILL" else ""
        return "killed", f"cell process was killed by {name}{hint} before writing a record", name
    if oom:
        return "oom", f"cell process ran out of memory and exited with code {code} without writing a record", None
    return "failed", f"cell process exited with code {code} without writing a record", None


# -------------------------------------------------------------------------------------------- child
def _child_entry(
    res: Resolved,
    done_file: str,
    device: str,
    results: str,
    data_root: str | None,
    env: dict,
    stderr: str,
    quiet: bool,
    stdout: str | None,
    parent: int,
    meter: str | None = None,
) -> None:
    """First thing in the cell's process: the parent's environment now (not the fork server's from when it
    started), stderr to a file the parent reads if the cell dies, stdout to the file the parent follows (or
    silenced when asked), and a watchdog that ends the cell if the process that asked for it is gone (a killed grid
    leaves no orphan computing) and writes what the cell has measured so far to ``meter``. The process ignores
    Ctrl-C, as its fork server does (``bench.run.preload``): the parent ends it when it is interrupted."""
    threading.Thread(target=_watch, args=(parent, meter), daemon=True).start()
    os.environ.clear()
    os.environ.update(env)
    try:
        fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:  # the parent gave up on the cell (Ctrl-C) before the fork server started it
        os._exit(0)
    os.dup2(fd, 2)
    if stdout:
        os.dup2(os.open(stdout, os.O_WRONLY | os.O_APPEND), 1)
        # print() writes to fd 1, a line at a time, whatever sys.stdout the process was forked with
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    elif quiet:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.exit(child_main(res, done_file, device, results, data_root))


_DEVICE: list[str] = []  # the device the cell runs on, once known (for the meter)


def _watch(parent: int, meter: str | None, every_s: float = METER_EVERY_S) -> None:
    """The cell process's watchdog: exit when the parent is gone; write the process's peak RSS and its device to
    ``meter`` (atomically), so a cell killed by the OOM killer still has a record of what it had used."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(143)
        if meter:
            with contextlib.suppress(OSError):
                tmp = f"{meter}.tmp"
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
                Path(tmp).write_text(json.dumps({"peak_rss_bytes": peak, "device": _DEVICE[0] if _DEVICE else None}))
                os.replace(tmp, meter)


def child_main(res: Resolved, done_file: str, device: str, results: str | None, data_root: str | None) -> int:
    """Body of the per-cell process: always writes a record, whatever happens. A cell that runs out of memory is
    retried once with half the micro-batch and twice the gradient accumulation (same effective batch, same
    number of optimizer steps, so the same cell and key); ``record.retry`` says so."""
    started = time.perf_counter()
    res = resolve(res)  # a Resolved stays as it is; a Cell (a caller of this body in-process) is resolved once
    store = Store(results)
    data = DataRoot.resolve(data_root)
    used = _device_of(device)
    record = _attempt(res, data, device, grad_accum=1)
    peaks = [_peak_now(used)]
    if record.status == "oom" and res.train.batch_size >= 2 and not _import_fault(record):
        first_error = (record.error or "").strip().splitlines()
        gc.collect()  # the failed attempt's tensors are unreachable now that _attempt returned
        _empty_cuda_cache()
        record = _attempt(res, data, device, grad_accum=2)
        peaks.append(_peak_now(used))
        record.retry = Retry(
            reason="oom",
            micro_batch=math.ceil(res.train.batch_size / 2),
            grad_accum=2,
            eval_batch=max(1, res.train.eval_batch_size // 2),
            first_error=first_error[-1] if first_error else "",
        )
    if record.status in ("oom", "failed", "diverged") and record.cost is None:  # what is known up to the failure
        known = [p for p in peaks if p is not None]
        record.cost = Cost(
            wall_time_s=time.perf_counter() - started,
            device=used,
            peak_mem_bytes=max(known) if known else None,
            peak_mem_kind=(("cuda_max_allocated" if used == "cuda" else "process_peak_rss") if known else None),
        )
    store.write(record)
    tmp = Path(done_file).with_suffix(".tmp")
    tmp.write_text(record.dumps())
    os.replace(tmp, done_file)
    return 0 if record.ok else 1


def _device_of(request: str) -> str | None:
    """The device the cell will run on (``execute`` says why when the request cannot be met)."""
    try:
        _DEVICE[:] = [pick_device(request)]
    except Exception:  # the attempt records why (no CUDA, torch not importable)
        return None
    return _DEVICE[0]


def _peak_now(device: str | None) -> int | None:
    """The peak memory so far, as a finished cell's record measures it: CUDA's max allocated (since the cell's
    measured window began), or the process's peak RSS."""
    try:
        if device == "cuda":
            import torch

            return int(torch.cuda.max_memory_allocated())
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    except Exception:  # a measurement that cannot be made is left out
        return None


IMPORT_FAULT = "could not load its libraries"


def _import_fault(record: Record) -> bool:
    """An ``oom`` record of a process that could not even import torch: a retry with half the batch cannot help."""
    return IMPORT_FAULT in (record.error or "")


def _attempt(res: Resolved, data: DataRoot, device: str, grad_accum: int) -> Record:
    """One run of the cell; any exception becomes a record with a status that says what happened (a process that
    cannot even import torch, under an address-space limit, an ``oom`` record that names the limit)."""
    diverged: tuple[type, ...] = ()
    try:
        from bench.run.loop import DivergedError

        diverged = (DivergedError,)
        return execute(res, data, device, grad_accum=grad_accum)
    except Exception as e:  # every failure becomes a record
        if isinstance(e, ImportError) and is_memory_fault(e):
            return new_record(res, "oom", f"the cell's process {IMPORT_FAULT}: {memory_fault_text(e, 'it')}")
        text = "".join(traceback.format_exception(e))
        if isinstance(e, DataError) and not os.environ.get("ADAPTBENCH_DEBUG"):
            text = str(e)  # one paragraph that names the file and the fix; the traceback adds nothing
        if len(text) > ERROR_TAIL:  # keep where it started and how it ended
            text = text[: ERROR_TAIL // 4] + "\n[...]\n" + text[-3 * ERROR_TAIL // 4 :]
        if isinstance(e, diverged):
            record = new_record(res, "diverged", text)
            record.divergence = Divergence(step=e.step, loss=str(e.loss))
            return record
        return new_record(res, "oom" if _is_oom(e) else "failed", text)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_oom(e: BaseException) -> bool:
    """An allocation failure: Python's MemoryError (or an ENOMEM, ``bench.run.limits``), CUDA's OutOfMemoryError,
    or the CPU allocator's RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    if is_memory_fault(e):
        return True
    try:
        import torch

        if isinstance(e, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:
        pass
    return isinstance(e, RuntimeError) and any(p in str(e) for p in OOM_PATTERNS[1:])
