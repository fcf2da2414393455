"""The pieces of tools/golden.py, one module per fixture group."""
