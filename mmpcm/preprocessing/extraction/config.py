"""What an extraction run is given (:class:`ExtractionConfig`) and what it
reports (:class:`ExtractionSummary`, :class:`FailedImage`)."""
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Union

DECODE_MODES = ('cpu', 'device')

__all__ = ['DECODE_MODES', 'ExtractionConfig', 'ExtractionSummary',
           'FailedImage']


class FailedImage(NamedTuple):
    """An image that could not be read."""
    image_id: Union[int, str]
    path: str
    reason: str


@dataclass(frozen=True)
class ExtractionConfig:
    """How to run an extraction.

    Args:
        batch_size (int): Images per forward pass. Defaults to 64.
        num_workers (int): DataLoader workers decoding images.
            Defaults to 4.
        shard_size (int): Items per feature-store shard. Defaults to 4096.
        device (str, optional): Defaults to None (``cuda:LOCAL_RANK`` when
            CUDA is present, else CPU).
        amp (bool): float16 autocast on CUDA. Defaults to True.
        merge (bool): Merge the rank parts when the run is a single process.
            Defaults to True.
        decode (str): ``'cpu'``: PIL decodes and resizes in the workers;
            ``'device'``: JPEGs are decoded and resized on ``device``
            (:func:`~mmpcm.datasets.clip_transforms.device_preprocess`; other
            files and rejected JPEGs still go through PIL). Features of the
            two modes differ at rounding level; a store is refused to the
            other mode. Defaults to 'cpu'.
    """
    batch_size: int = 64
    num_workers: int = 4
    shard_size: int = 4096
    device: Optional[str] = None
    amp: bool = True
    merge: bool = True
    decode: str = 'cpu'

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f'decode must be one of {DECODE_MODES}, got '
                             f'{self.decode!r}')


@dataclass
class ExtractionSummary:
    """What one rank did in one run.

    Args:
        assigned (int): Items of this rank's block.
        already_done (int): Of those, stored by an earlier run.
        extracted (int): Items stored in this run.
        failed (list[FailedImage]): Unreadable images (this rank, all runs).
        truncated_captions (int): Captions of this run longer than CLIP's
            context, truncated.
        part_dir (str): This rank's store.
        merged_dir (str, optional): The merged store, when merged.
    """
    assigned: int = 0
    already_done: int = 0
    extracted: int = 0
    failed: List[FailedImage] = field(default_factory=list)
    truncated_captions: int = 0
    part_dir: str = ''
    merged_dir: Optional[str] = None
