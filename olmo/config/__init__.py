"""Typed configs: YAML + dotted overrides → dataclasses."""
