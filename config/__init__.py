"""Validated stack settings."""

from config.settings import InstanceLimits, PortForward, Settings, SettingsError, load_settings

__all__ = ["InstanceLimits", "PortForward", "Settings", "SettingsError", "load_settings"]
