"""The portal: the unified inbox where team members read and answer SMS, WhatsApp and fax.

Server-rendered pages (Starlette routes, Jinja2 templates, htmx from our own static files,
no inline script) found by the core as the ``portal`` extension (``extension.py``):

- ``security.py`` guards every route (language, security headers and CSP, session,
  CSRF); ``accounts.py`` signs members in (Argon2id, rotated server-side sessions,
  throttling, invitation links); ``invites.py`` mails the invitations as durable jobs of
  the portal's own kind (``portal_invite``, retried with backoff while the relay is down);
- ``storage.py`` is the portal's storage role (accounts, sessions, drafts, read state and
  the inbox index) with one implementation per store backend;
- ``indexer.py`` keeps the inbox index from the event log and ``live.py`` tails the log
  for the live event streams (``routes/events.py``);
- ``routes/`` holds one module per area (auth, inbox, thread, compose, settings, admin,
  webhooks, events), ``templates/`` one template per page and partials for htmx swaps,
  ``static/`` the CSS, our small script and the vendored htmx (pinned by ``npm/``).
"""
