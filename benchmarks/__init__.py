"""Speed measurements of keras_resnet: run each as a module from the repository root.

``python -m benchmarks.throughput``, ``benchmarks.input_pipeline``, ``benchmarks.cpu_convolutions``
and ``benchmarks.recipe_epochs``; what they share is in ``benchmarks.common``. This package is
not installed with keras_resnet (see benchmarks/README.md).
"""
