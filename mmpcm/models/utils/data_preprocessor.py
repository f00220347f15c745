"""Moving a batch to the model's device."""
from typing import Any, Optional

from mmengine.model import BaseDataPreprocessor

from mmpcm.registry import MODELS


@MODELS.register_module()
class PCMDataPreprocessor(BaseDataPreprocessor):
    """Move a batch's ``inputs`` to the model's device; keep its data
    samples where the data loader built them.

    mmengine's :class:`BaseDataPreprocessor` also calls ``.to(device)`` on
    every data sample, which copies each sample's metainfo even when the
    sample holds no tensor (host time per step: ``docs/benchmarks.md``,
    "Findings for the core"); under ``torch.compile`` the copies are new
    objects every step, so dynamo's guards on them failed and the compiled
    train step was recompiled at every iteration. mmpcm's data samples hold
    only text and numbers: everything a training or test step computes with
    (features, caption ids, CLIP scores) travels in ``inputs``.

    Args:
        non_blocking (bool): Asynchronous host-to-device copies (they
            overlap with the host only from pinned memory). Defaults to
            False.
        cast_data_samples (bool): Move the data samples too, as mmengine
            does, for samples that carry tensors. Defaults to False.
    """

    def __init__(self,
                 non_blocking: Optional[bool] = False,
                 cast_data_samples: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        self.cast_data_samples = cast_data_samples

    def forward(self, data: dict, training: bool = False) -> dict:
        """Move ``data['inputs']`` (and, if asked, the data samples).

        Args:
            data (dict): ``inputs`` and, optionally, ``data_samples``, as
                the collate function returns them.
            training (bool): Unused; the same in training and test.
                Defaults to False.

        Returns:
            dict: ``inputs`` on the device and ``data_samples``.
        """
        samples: Any = data.get('data_samples')
        if self.cast_data_samples:
            samples = self.cast_data(samples)
        return dict(inputs=self.cast_data(data['inputs']),
                    data_samples=samples)
