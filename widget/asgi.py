"""The ASGI entry point uvicorn imports (``widget.asgi:app``), settings from the environment."""

from widget.app import create_app

app = create_app()
