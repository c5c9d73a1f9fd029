"""Restoration methods. Each lives in one file and registers itself by name."""

from .base import Method, available_methods, build_config, get_method, load_model, register

__all__ = ["Method", "available_methods", "build_config", "get_method", "load_model", "register"]
