"""Flow tests share the session's Prefect API fixture (``prefect_api``) from tests/conftest.py."""
