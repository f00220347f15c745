from .caption_ids_hook import PCMCaptionIdsHook
from .load_release_hook import PCMLoadReleaseHook
from .prediction_dump_hook import PREDICTIONS_FILE, PCMPredictionDumpHook

__all__ = ['PCMCaptionIdsHook', 'PCMLoadReleaseHook', 'PCMPredictionDumpHook',
           'PREDICTIONS_FILE']
