"""Pipeline files: YAML source with positions, pydantic models, payload rules, settings."""
