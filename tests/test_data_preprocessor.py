"""PCMDataPreprocessor: inputs go to the device, data samples stay."""
import torch
from mmpretrain.structures import DataSample

from mmpcm.models import PCMDataPreprocessor


def _batch():
    samples = []
    for i in range(3):
        sample = DataSample(metainfo=dict(image_id=str(i)))
        sample.gt_caption = f'caption {i}'
        sample.weights = torch.ones(2)
        samples.append(sample)
    inputs = dict(patch_tokens=torch.zeros(3, 4, 8, dtype=torch.float16),
                  caption_ids=torch.zeros(3, 5, dtype=torch.long))
    return dict(inputs=inputs, data_samples=samples)


def test_inputs_move_and_samples_stay_as_built():
    batch = _batch()
    out = PCMDataPreprocessor(non_blocking=True).to('meta')(batch, True)
    assert {v.device.type for v in out['inputs'].values()} == {'meta'}
    assert out['inputs']['patch_tokens'].dtype == torch.float16
    assert out['data_samples'] is batch['data_samples']
    assert batch['data_samples'][0].weights.device.type == 'cpu'


def test_data_samples_move_when_asked():
    batch = _batch()
    out = PCMDataPreprocessor(cast_data_samples=True).to('meta')(batch)
    moved = out['data_samples']
    assert [s.gt_caption for s in moved] == ['caption 0', 'caption 1',
                                              'caption 2']
    assert {s.weights.device.type for s in moved} == {'meta'}


def test_a_batch_without_data_samples():
    out = PCMDataPreprocessor()(dict(inputs=dict(x=torch.ones(1))))
    assert out['data_samples'] is None and torch.equal(out['inputs']['x'],
                                                       torch.ones(1))
