"""Measured rows, Markdown tables and the JSON results file."""
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from mmpcm.utils.fileio import atomic_write_json


@dataclass
class ThroughputResult:
    """One measured row.

    Attributes:
        name (str): What was measured (recipe, precision...).
        device (str): ``describe_device`` of where it ran.
        batch_size (int): Items per iteration.
        iters (int): Timed iterations (after warm-up).
        seconds (float): Wall-clock seconds of the timed iterations.
        items (int): Items processed in them.
        note (str): Anything needed to read the row.
        extra (dict): Further figures (e.g. seconds per epoch).
    """
    name: str
    device: str
    batch_size: int
    iters: int
    seconds: float
    items: int
    note: str = ''
    extra: Dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        """Items per second."""
        return self.items / self.seconds if self.seconds > 0 else float('nan')

    @property
    def ms_per_iter(self) -> float:
        """Milliseconds per timed iteration."""
        return 1000 * self.seconds / max(self.iters, 1)

    def to_dict(self) -> dict:
        """The fields and the derived rates, for the JSON results."""
        out = {k: getattr(self, k) for k in (
            'name', 'device', 'batch_size', 'iters', 'seconds', 'items',
            'note', 'extra')}
        out.update(per_second=self.per_second, ms_per_iter=self.ms_per_iter)
        return out


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[format_cell(v) for v in r]
                                           for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: List[str]) -> str:
        padded = (c.ljust(w) for c, w in zip(row, widths, strict=True))
        return '| ' + ' | '.join(padded) + ' |'

    sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    return '\n'.join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def format_cell(value) -> str:
    """A table cell: thousands separators, 3 significant digits below 10,
    ``-`` for NaN."""
    if isinstance(value, float):
        if value != value:  # NaN
            return '-'
        return f'{value:,.1f}' if abs(value) >= 10 else f'{value:.3g}'
    if isinstance(value, int):
        return f'{value:,}'
    return str(value)


def write_json(path: Optional[str], payload: dict) -> None:
    """Write the results as JSON (atomically) when a path is given."""
    if not path:
        return
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_write_json(path, payload)
