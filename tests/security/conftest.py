"""The API tests' fixtures (app on the test database, keys per role, a seeded world), reused here."""

from tests.api.conftest import app, auth, client, embedder, job_runner, keys, world  # noqa: F401
