"""Fax over IP: the spandsp binding, UDPTL, RTP/G.711 and the media sessions that carry T.30."""
