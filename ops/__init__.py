"""The prodmon command-line interface."""
