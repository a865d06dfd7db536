"""The project's kernel: helpers every app uses, importing no app.

errors   DomainError (the base every app's domain errors extend), InvalidTransition, ActorRequired
actors   Actor (a user or a named system actor) and actor_resolve
console  ConsoleView (the console's base view) and console_page (keyset paging for a console list)
admin    BigTableAdminMixin (Django admin settings for tables of millions of rows)
exports  csv_export (a console list's queryset as CSV, columns as (header, field) pairs) and csv_stream (rows as CSV)
crypto   get_fernet: the Fernet keys of settings.FIELD_ENCRYPTION_KEY (or one derived from SECRET_KEY)
trends   daily_found_healed: found and healed per day, with the bars of the console's inline SVG chart
accounts the sales account as orders sees it (id, kind, name): a port channels provides, read by id

Nothing is re-exported here: ``actors``, ``console`` and ``admin`` import django.contrib.auth, which an
app's models module must not pull in while the app registry loads.
"""
