"""Built-in plugins, registered like any other."""
