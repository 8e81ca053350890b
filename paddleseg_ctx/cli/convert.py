"""``python -m paddleseg_ctx.convert``: a PyTorch checkpoint (mmsegmentation,
sssegmentation, OpenMMLab ImageNet backbone) as a Paddle ``.pdparams`` file,
without PyTorch::

    python -m paddleseg_ctx.convert \\
        gcnet_r50-d8_512x1024_40k_cityscapes_20200618_074436-4b0fd17b.pth \\
        gcnet_r50.pdparams --config configs/gcnet/<config>.yml

``--model_path`` and ``pretrained`` also take ``.pth`` files and URLs
directly; this command is for inspecting a conversion or keeping its result.
"""
import os

from paddleseg.utils import logger

from paddleseg_ctx import weights, zoo
from paddleseg_ctx.errors import ArgumentParser, run


def build_parser():
    parser = ArgumentParser(
        prog='python -m paddleseg_ctx.convert',
        description='Convert a PyTorch checkpoint to Paddle weights; the key map '
        'is chosen from the checkpoint\'s keys (paddleseg_ctx/weights/keymaps).')
    parser.add_argument(
        'src', metavar='SRC', help='PyTorch checkpoint (.pth) written by torch.save.')
    parser.add_argument(
        'dst', metavar='DST', help='Output .pdparams file (written atomically).')
    parser.add_argument(
        '--config',
        help='Config whose model (or backbone, for ImageNet weights) the converted '
        'weights must fill exactly, key by key and shape by shape. Default: the '
        'configs/model_zoo.yml entry that publishes a file of SRC\'s name, if any.')
    parser.add_argument(
        '--debug',
        action='store_true',
        help='List every key with its Paddle name, and show the traceback of an '
        'error (by default a problem with the input ends the command with one message).')
    return parser


def main(argv=None):
    """Returns the :class:`paddleseg_ctx.weights.Conversion`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.src):
        parser.error('SRC {}: no such file.'.format(args.src))
    if args.config and not os.path.isfile(args.config):
        parser.error('--config {}: no such file.'.format(args.config))
    config = args.config or zoo.zoo_config(args.src)
    result = weights.convert(args.src, config)
    report(result, args)
    weights.save_converted(result.state, args.dst)
    logger.info('Saved {} tensors to {}.'.format(len(result.state), args.dst))
    return result


def report(result, args):
    dropped = [key for key, name in result.pairs if name is None]
    logger.info('Source:       {} in {}'.format(result.source, args.src))
    logger.info('Architecture: {} ({})'.format(result.keymap.name,
                                               result.keymap.description))
    logger.info('Tensors:      {} ({} keys read, {} dropped)'.format(
        len(result.state), len(result.pairs), len(dropped)))
    if result.config is None:
        logger.warning('Names and shapes were not checked against a model: no --config '
                       'given and no configs/model_zoo.yml entry publishes {}. They are '
                       'checked when the weights are loaded.'.format(
                           os.path.basename(args.src)))
    else:
        found = '' if args.config else ' (the model-zoo entry of this file)'
        logger.info('Checked:      every key and shape of the {} of {}{}'.format(
            result.keymap.target, result.config, found))
    if args.debug:
        for key, name in result.pairs:
            shape = list(result.state[name].shape) if name else ''
            logger.info('  {} -> {} {}'.format(key, name or '(dropped)', shape))


if __name__ == '__main__':
    run(main)
