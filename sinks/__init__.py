"""Notifier sinks and their shared delivery machinery."""
