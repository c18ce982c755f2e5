"""Durable job storage on SQLite or PostgreSQL (SQLAlchemy Core)."""
