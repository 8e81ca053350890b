"""Fixes for running PaddleSeg 2.8.0 on Paddle 3.x (placeholder: see issue 2)."""


def apply_all():
    """Apply every fix that the installed PaddleSeg/Paddle pair needs."""
