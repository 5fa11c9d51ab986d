"""Outbound webhooks to developers: endpoints per team, Standard Webhooks signatures, and
durable, ordered deliveries from the store's event log.

Modules: ``endpoints`` (what a team registers), ``targets`` (URL rules and the SSRF
address policy), ``signing`` (secrets, rotation, signatures), ``client`` (the HTTP/1.1
client that connects to checked addresses), ``delivery`` (fan-out, ordering, retries,
disabling: the rules are in its docstring), ``api`` and ``openapi`` (the
``/v1/webhook-endpoints`` routes and their documentation), ``settings`` (the ``[webhooks]``
section), ``models`` (endpoints and deliveries), ``storage`` (the ``WebhookStore`` storage
role) with one implementation per store backend (``storage_sqlite``, ``storage_redis``),
and ``extension`` (how the core finds all of it: the ``gateway.extensions`` entry point;
the core never imports this package).
"""
