"""SMPP 3.4: an own PDU codec and session, the ``smpp`` connector, and an SMSC simulator.

Modules: ``pdu`` (codec), ``gsm7`` (GSM 03.38 septets), ``udh`` (concatenation headers),
``receipt`` (delivery receipts), ``session`` (one asyncio client session),
``content`` (texts ↔ submit_sm / deliver_sm), ``status`` (command_status → errors),
``reassembly`` (inbound concatenation), ``inbound`` (deliver_sm handling),
``tracking`` (rate limit, submitted ids), ``options``, ``connector`` (kind ``smpp``) and
``simulator`` (an SMSC for tests and ``gateway demo``).
"""
