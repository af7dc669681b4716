"""Downstream evaluation: zero-shot rank classification on the OLMo paper tasks."""
