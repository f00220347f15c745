from .caption_visualizer_hook import PCMCaptionVisualizerHook
from .checkpoint_fit_hook import PCMCheckpointFitHook
from .gallery_hook import PCMGalleryHook
from .load_release_hook import PCMLoadReleaseHook
from .prediction_dump_hook import PREDICTIONS_FILE, PCMPredictionDumpHook
from .resume_schedule_hook import PCMResumeScheduleHook

__all__ = ['PCMCaptionVisualizerHook', 'PCMCheckpointFitHook',
           'PCMGalleryHook',
           'PCMLoadReleaseHook', 'PCMPredictionDumpHook',
           'PCMResumeScheduleHook', 'PREDICTIONS_FILE']
