"""WhatsApp Business through Meta's Cloud API.

- ``cloud.py``: the connector (kind ``whatsapp_cloud``; options and meta keys there);
- ``webhook.py``: X-Hub-Signature-256 and the webhook payload → inbound messages and
  delivery reports;
- ``errors.py``: the one table of Graph API error codes;
- ``media.py``: upload limits, upload, and the two-step media download;
- ``throughput.py``: messages per second per business number, per-recipient backoff;
- ``simulator.py``: a local Graph API and webhook sender that behaves like Meta.
"""
