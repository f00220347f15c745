"""The device a benchmark runs on, and the description printed with it."""
import os
import platform
from typing import Optional

import torch


def resolve_device(name: Optional[str]) -> torch.device:
    """``'cuda'`` when available unless a device is named."""
    if name:
        return torch.device(name)
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def hide_cuda_if_cpu(name: Optional[str]) -> None:
    """Make CUDA invisible when ``--device cpu`` is asked for.

    The mmengine Runner always puts the model on the GPU when it sees one,
    so a CPU measurement on a GPU machine hides the GPU instead. Must run
    before the first CUDA call of the process.
    """
    if name is not None and torch.device(name).type == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or ``platform``)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_device(device: torch.device) -> str:
    """A one-line description of the device a figure was measured on.

    Args:
        device (torch.device): The benchmark's device.

    Returns:
        str: The GPU's name, or ``'CPU: <model>, <n> cores'`` (cores as
        this process may use them).
    """
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU: {cpu_model()}, {usable_cores()} cores'


def describe_software() -> str:
    """Versions and thread count that matter for the figures."""
    import mmengine
    parts = [f'torch {torch.__version__}', f'mmengine {mmengine.__version__}',
             f'python {platform.python_version()}',
             f'{torch.get_num_threads()} torch thread(s)']
    if torch.cuda.is_available():
        parts.append(f'CUDA {torch.version.cuda}')
    return ', '.join(parts)


def describe_load() -> str:
    """The machine's load average: other processes skew CPU figures."""
    if not hasattr(os, 'getloadavg'):
        return 'load average unknown'
    one, five, _ = os.getloadavg()
    return f'load average {one:.1f} (1 min), {five:.1f} (5 min)'


def start_benchmark(device_arg: Optional[str],
                    threads: Optional[int]) -> torch.device:
    """The shared start of every benchmark script.

    Hides CUDA for ``--device cpu``, sets mmpcm up as every tool does
    (:func:`mmpcm.setup_env.register_all_modules`: library fixes, registries,
    the ``mmpretrain`` default scope), resolves the device, sets the torch
    thread count and prints the machine header line.

    Args:
        device_arg (str, optional): The ``--device`` argument.
        threads (int, optional): The ``--threads`` argument.

    Returns:
        torch.device: The device to run on.
    """
    from mmpcm.setup_env import register_all_modules
    hide_cuda_if_cpu(device_arg)
    register_all_modules()
    device = resolve_device(device_arg)
    if threads:
        torch.set_num_threads(threads)
    print(f'{describe_device(device)}; {describe_software()}; '
          f'{describe_load()}')
    return device
