"""The scale benchmark (``make bench DEVICES=N``): see docs/scale.md."""
