"""Studies: measurements that chose the shipped recipe or explain its results, apart from the
pipeline that makes the weights (``train.labels``, ``train.distill``, ``train.fit``,
``train.release`` and what they use). Each is a command of its own:

- ``python -m train.studies.gap_bootstrap``: paired bootstrap of the share of the EDC gap closed;
- ``python -m train.studies.edc_misses``: which failed comparisons a quality leaves in;
- ``python -m train.studies.components_edc``: the quality components' EDC rows (docs/components.md).
"""
