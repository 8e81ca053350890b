"""One image through an mmseg or ssseg :class:`Protocol`: test-time resize,
scales, flips, whole or sliding-window inference, merge; the class map at the
original size.

Per scale and flip (the order each codebase's test code uses, see
:data:`~paddleseg_ctx.evaluation.protocol.STEPS`)::

    input  = scaled image (mmseg: original uint8 re-fitted; ssseg: the
             test-resized image's normalised tensor interpolated), flipped
    output = network(input)          whole: model(x) at input size, or
                                     raw_logits(x) for one resize;
                                     slide: windows at window size, averaged
             [softmax here: ssseg probs]  [flip back here: ssseg]
    output = resize(output, original size, model.align_corners)
             [softmax here: mmseg]        [flip back here: mmseg]
    total += output;  prediction = argmax(total)
"""
import numpy as np
import paddle
import paddle.nn.functional as F
from paddleseg.transforms import functional

from paddleseg_ctx.transforms.test_time import resize_uint8, target_size

__all__ = ['predict']


def predict(model, image, protocol, mean, std):
    """Class map (H, W) of ``model`` for one image under ``protocol``.

    Args:
        model (nn.Layer): In eval mode; ``model(x)[0]`` are logits at the
            input size, ``model.raw_logits(x)[0]`` (needed when the protocol
            resizes once) at feature resolution.
        image (np.ndarray): uint8 HWC image in the channel order the network
            expects (RGB for PaddleSeg configs).
        protocol (Protocol): An ``mmseg`` or ``ssseg`` protocol.
        mean, std: ``Normalize`` parameters of the config's val transforms.
    """
    steps = protocol.steps
    if steps.scale_by == 'size':
        raise ValueError('paddleseg protocols run through '
                         'paddleseg.core.evaluate, not predict().')
    height, width = image.shape[:2]
    align_corners = bool(getattr(model, 'align_corners', False))
    probs = protocol.merge == 'probs'
    total = None
    for x in _scaled_inputs(image, protocol, mean, std, align_corners):
        for flip in (False, True) if protocol.flip else (False, ):
            out = _network(model, paddle.flip(x, [3]) if flip else x,
                           protocol, probs and steps.softmax_at == 'output')
            if flip and steps.flip_back_at == 'output':
                out = _flip_back(out, protocol.flip_pairs)
            out = _resize(out, [height, width], align_corners)
            if probs and steps.softmax_at == 'original':
                out = F.softmax(out, axis=1)
            if flip and steps.flip_back_at == 'original':
                out = _flip_back(out, protocol.flip_pairs)
            total = out if total is None else total + out
    return paddle.argmax(total, axis=1)[0].numpy()


def _to_tensor(image, mean, std):
    """PaddleSeg's ``Normalize`` of a uint8 HWC image, as a 1xCxHxW tensor."""
    x = functional.normalize(image.astype('float32'), mean, std)
    return paddle.to_tensor(x.transpose(2, 0, 1)[None].copy())


def _scaled_inputs(image, protocol, mean, std, align_corners):
    """One normalised input tensor per scale of ``protocol``."""
    height, width = image.shape[:2]
    keep_ratio = protocol.test_resize != 'squash'
    if protocol.steps.scale_by == 'refit':
        # mmseg 0.x MultiScaleFlipAug: ratio r turns img_scale (or the image
        # size when there is none) into the box (int(W*r), int(H*r)), and the
        # ORIGINAL image is resized into that box.
        box_w, box_h = protocol.img_scale or (width, height)
        for scale in protocol.scales:
            box = (int(box_w * scale), int(box_h * scale))
            size = target_size(width, height, box, keep_ratio)
            yield _to_tensor(resize_uint8(image, size), mean, std)
        return
    # ssseg: one test resize, then F.interpolate(scale_factor=s) per scale.
    if protocol.img_scale is not None:
        size = target_size(width, height, protocol.img_scale, keep_ratio)
        image = resize_uint8(image, size)
    x = _to_tensor(image, mean, std)
    for scale in protocol.scales:
        yield F.interpolate(
            x, scale_factor=scale, mode='bilinear',
            align_corners=align_corners)


def _network(model, x, protocol, softmax):
    """Logits (or probabilities with ``softmax``) of one input."""
    if protocol.mode == 'slide':
        return _slide(model, x, protocol, softmax)
    if protocol.steps.whole_resizes == 1:
        if not hasattr(model, 'raw_logits'):
            raise TypeError(
                '{} protocols resize the feature-resolution logits once, '
                'which needs model.raw_logits(x); {} has none (paddleseg_ctx '
                'models have it).'.format(protocol.source,
                                          type(model).__name__))
        out = model.raw_logits(x)[0]
    else:
        out = model(x)[0]
    return F.softmax(out, axis=1) if softmax else out


def _slide(model, x, protocol, softmax):
    """Windows of ``slide_crop_size`` every ``slide_stride``, the last one of
    each row/column ending at the border; each window's logits at window
    size (softmaxed first with ``softmax``), averaged where they overlap."""
    _, _, h_img, w_img = x.shape
    w_crop, h_crop = protocol.slide_crop_size
    w_stride, h_stride = protocol.slide_stride
    rows = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    cols = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    total = None
    count = np.zeros([1, 1, h_img, w_img], 'float32')
    for row in range(rows):
        for col in range(cols):
            y2 = min(row * h_stride + h_crop, h_img)
            x2 = min(col * w_stride + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            crop = x[:, :, y1:y2, x1:x2]
            if protocol.slide_pad and (y2 - y1 < h_crop or x2 - x1 < w_crop):
                # mmseg 0.5.0: zero-pad (bottom/right) to the window size.
                crop = F.pad(crop, [0, w_crop - (x2 - x1), 0, h_crop -
                                    (y2 - y1)])
                out = model(crop)[0][:, :, :y2 - y1, :x2 - x1]
            else:
                out = model(crop)[0]
            if softmax:
                out = F.softmax(out, axis=1)
            if total is None:
                total = paddle.zeros([1, out.shape[1], h_img, w_img],
                                     out.dtype)
            total[:, :, y1:y2, x1:x2] += out
            count[:, :, y1:y2, x1:x2] += 1
    return total / paddle.to_tensor(count)


def _flip_back(out, flip_pairs):
    """Undo a horizontal flip; swap paired channels (LIP's left/right)."""
    if flip_pairs:
        order = list(range(out.shape[1]))
        for a, b in flip_pairs:
            order[a], order[b] = b, a
        out = paddle.index_select(out, paddle.to_tensor(order), axis=1)
    return paddle.flip(out, [3])


def _resize(out, size, align_corners):
    # align_mode 0 (half-pixel) is torch's align_corners=False mapping.
    return F.interpolate(
        out, size, mode='bilinear', align_corners=align_corners, align_mode=0)
