"""Alembic migrations. They import nothing from our packages: history must not change with code."""
