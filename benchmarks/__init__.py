"""Speed measurements of keras_resnet, run as modules from the repository root (not installed)."""
