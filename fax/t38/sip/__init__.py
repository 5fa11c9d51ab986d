"""An asyncio SIP user agent for fax calls (RFC 3261, RFC 4028, digest auth).

The pieces others use: `ua.UserAgent` and `config.UserAgentConfig`; `call.Call` (its
public face as a protocol: `control.CallControl`) and `outcome.CallOutcome`; the media
seam `media.MediaHandler`; the incoming-call decision `incoming.IncomingCall` / `Answer`
/ `Reject`; the error tree in `errors`. `host.SipHost` is what calls need of the UA.
"""
