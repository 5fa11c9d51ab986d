"""The messaging gateway core: SMS, WhatsApp Business and fax in one message store."""

__version__ = "0.1.0"
