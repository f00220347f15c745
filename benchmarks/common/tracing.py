"""Host dispatch and kernel launches of a window of steps (torch.profiler)."""
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch

from .timing import synchronize


@dataclass
class TraceSummary:
    """Per-iteration counts of a window recorded by :class:`StepTracer`.

    Every ATen operator is a trip through Python and the dispatcher, and on
    a GPU a kernel launch; these counts say how many trips a step makes and
    how much of its time the GPU is busy, i.e. how host-bound it is.

    Attributes:
        iters (int): Recorded iterations.
        wall_ms (float): Wall-clock ms per iteration, the profiler's own
            overhead included (slower than the timed rows).
        aten_ops (float): ATen operators per iteration called from Python
            or autograd (top-level: those called inside another ATen
            operator are not counted again).
        launches (float): Kernel launches the host issued per iteration
            (CUDA runtime and driver launch calls; one CUDA graph replay
            counts once). 0 on the CPU.
        device_kernels (float): Kernels, copies and fills the GPU ran per
            iteration. 0 on the CPU.
        device_ms (float): Their summed duration per iteration.
    """
    iters: int
    wall_ms: float
    aten_ops: float
    launches: float
    device_kernels: float
    device_ms: float

    @property
    def device_busy(self) -> float:
        """Share of the wall-clock time the GPU spent running kernels."""
        return self.device_ms / self.wall_ms if self.wall_ms > 0 else 0.0

    def to_dict(self) -> dict:
        """The fields and ``device_busy``, for the JSON results."""
        return dict(asdict(self), device_busy=self.device_busy)


def summarize_trace(events: Sequence, iters: int,
                    seconds: float) -> TraceSummary:
    """Count a profiler's events (``torch.profiler.profile.events()``).

    Args:
        events (Sequence[FunctionEvent]): The recorded events, with their
            ``cpu_parent`` links.
        iters (int): Iterations they span.
        seconds (float): Wall-clock seconds of the window.

    Returns:
        TraceSummary: Per-iteration counts.
    """
    from torch.autograd import DeviceType
    ops = launches = kernels = 0
    device_us = 0.0
    for event in events:
        if event.device_type == DeviceType.CUDA:
            kernels += 1
            device_us += event.time_range.elapsed_us()
        elif event.name.startswith('aten::'):
            parent = event.cpu_parent
            ops += parent is None or not parent.name.startswith('aten::')
        elif event.name.startswith('cu') and 'Launch' in event.name:
            # cudaLaunchKernel(ExC), cuLaunchKernel(Ex), cudaGraphLaunch
            launches += 1
    n = max(iters, 1)
    return TraceSummary(iters, 1000 * seconds / n, ops / n, launches / n,
                        kernels / n, device_us / 1000 / n)


class StepTracer:
    """Records a window of iterations with ``torch.profiler``.

    Call :meth:`start` at the end of the iteration before the window and
    :meth:`stop` at the end of its last iteration.

    Args:
        device (torch.device): CUDA activity is recorded too on a GPU; the
            device is synchronised at both ends.
        trace_file (str, optional): Also write a Chrome trace here
            (``chrome://tracing`` or Perfetto). Defaults to None.
    """

    def __init__(self, device: torch.device,
                 trace_file: Optional[str] = None) -> None:
        self.device = device
        self.trace_file = trace_file
        self.profiler = None
        self.started = 0.0

    def start(self) -> None:
        """Start recording."""
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU]
        if self.device.type == 'cuda':
            activities.append(ProfilerActivity.CUDA)
        synchronize(self.device)
        self.profiler = profile(activities=activities)
        self.profiler.__enter__()
        self.started = time.perf_counter()

    def stop(self, iters: int) -> TraceSummary:
        """End the window of ``iters`` iterations and count it."""
        if self.profiler is None:
            raise RuntimeError('StepTracer.stop() before start()')
        synchronize(self.device)
        seconds = time.perf_counter() - self.started
        self.profiler.__exit__(None, None, None)
        profiler, self.profiler = self.profiler, None
        if self.trace_file:
            os.makedirs(osp.dirname(osp.abspath(self.trace_file)),
                        exist_ok=True)
            profiler.export_chrome_trace(self.trace_file)
        return summarize_trace(profiler.events(), iters, seconds)
