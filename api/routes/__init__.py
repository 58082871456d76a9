"""One router per resource; :func:`api.app.create_app` includes them all under ``/v1``."""
