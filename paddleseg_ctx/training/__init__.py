"""Training with PaddleSeg's own loop, made to resume exactly, survive a kill
and log more (used by ``python -m paddleseg_ctx.train``).

* ``hooks``: ``TrainingRun``, the hooks into ``paddleseg.core.train``;
* ``checkpoints``: atomic files, the training-state file, resume checks;
* ``data``: data order and augmentations that a resumed run repeats;
* ``vdl``: per-class IoU, sample images and a continued VisualDL log.
"""
