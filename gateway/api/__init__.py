"""The REST API v1 (Starlette): messages, conversations, attachments, quota, operations."""
