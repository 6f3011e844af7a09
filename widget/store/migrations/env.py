"""Alembic environment: runs on the connection the store hands over
(``config.attributes["connection"]``), so migrations share the app's engine."""

from alembic import context

from widget.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
