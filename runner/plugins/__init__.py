"""Plugins: hook specifications, the plugin manager factory and built-in plugins."""
