"""Independent SMSCs (node-smpp and smpp34) that the gateway's SMPP connector is tested against."""
