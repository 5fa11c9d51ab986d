"""Fax over SIP (T.38, G.711 fallback): the ``sip_t38`` connector on the fax/t38 transport.

Modules: ``options`` (the connector table), ``outcomes`` (SIP and T.30 outcomes → our
errors, the fallback ladder, the retry schedule), ``sending`` (one outbound fax),
``receiving`` (incoming calls), ``connector`` (kind ``sip_t38``), ``demo`` (the fax
simulator as ``gateway demo``'s fax carrier).
"""
