"""HTTP SMS carriers: the Twilio-compatible connector, its signature and a local simulator."""
