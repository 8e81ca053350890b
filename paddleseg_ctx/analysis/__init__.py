"""Analysis tools behind ``python -m paddleseg_ctx.analyze``: multiply-adds
and parameters per module group (``flops``), the confusion matrix
(``confusion``), per-image scores and pictures of the worst images
(``images``, ``predictions``)."""
from paddleseg_ctx.analysis.confusion import (confusion_counts,
                                              heatmap_image, normalize_rows,
                                              write_csv, write_png)
from paddleseg_ctx.analysis.flops import (count_macs, format_table,
                                          group_table, macs_by_layer,
                                          module_groups)
from paddleseg_ctx.analysis.images import image_scores, panel
from paddleseg_ctx.analysis.predictions import (class_names,
                                                paddleseg_prediction,
                                                predictions, raw_image)

__all__ = ['class_names', 'confusion_counts', 'count_macs', 'format_table',
           'group_table', 'heatmap_image', 'image_scores', 'macs_by_layer',
           'module_groups', 'normalize_rows', 'paddleseg_prediction',
           'panel', 'predictions', 'raw_image', 'write_csv', 'write_png']
