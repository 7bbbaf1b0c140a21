"""Validated stack settings, one module per config section (see config/settings.py)."""

from config.settings import InstanceLimits, PortForward, Settings, SettingsError, load_settings

__all__ = ["InstanceLimits", "PortForward", "Settings", "SettingsError", "load_settings"]
