"""Email-to-fax and fax-to-email: the SMTP receiver, the IMAP mailbox, the mail sent."""
