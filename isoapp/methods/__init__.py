"""Restoration methods. Each lives in one file and registers itself by name."""

from .base import (
    Method,
    TimeModel,
    available_methods,
    build_config,
    capabilities,
    default_method,
    get_method,
    load_model,
    method_label,
    register,
)

__all__ = ["Method", "TimeModel", "available_methods", "build_config", "capabilities", "default_method",
           "get_method", "load_model", "method_label", "register"]
