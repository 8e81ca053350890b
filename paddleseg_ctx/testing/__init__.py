"""What tests/ and scripts/ share; the package itself never imports it.

- ``families``: one table of the model families, the form each is tested and
  benchmarked in (``families.yml``)
- ``random_weights``: random weights with non-trivial BatchNorm statistics,
  for Paddle and PyTorch models alike
- ``references``: the PyTorch originals (mmsegmentation's GCNet,
  sssegmentation's ISNet) built for parity; needs requirements-parity.txt,
  imported only when called
"""
