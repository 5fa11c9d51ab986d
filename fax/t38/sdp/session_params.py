"""From what SDP agreed (`Negotiated`) to what a media session starts with (`MediaParams`)."""

from __future__ import annotations

from typing import Literal

from fax.t38.params import AudioParams, MediaParams, T38Params
from fax.t38.sdp.media import MediaKind, Negotiated
from fax.t38.sip.errors import MediaNotAcceptable


def session_params(neg: Negotiated, *, redundancy: int = 3) -> MediaParams:
    """`T38Params` or `AudioParams` for the agreed stream.

    T.38 takes the settled version, bit rate, rate management, error correction and
    transcoding flags, and the far end's receive limits (``T38FaxMaxDatagram`` and
    ``T38FaxMaxBuffer`` from its SDP; the session's defaults when it gave none).
    ``redundancy`` is our depth of repeated IFPs. Values a session cannot run with raise
    `MediaNotAcceptable` (refuse the offer with 488).
    """
    try:
        if neg.kind is MediaKind.AUDIO:
            if neg.codec is None:
                raise MediaNotAcceptable("audio stream without a codec")
            if neg.codec.name not in ("PCMU", "PCMA"):
                raise MediaNotAcceptable(f"fax over audio needs G.711, not {neg.codec.name}")
            codec: Literal["PCMU", "PCMA"] = "PCMU" if neg.codec.name == "PCMU" else "PCMA"
            return AudioParams(codec=codec, payload_type=neg.codec.payload_type,
                               ptime=neg.ptime)
        t38 = neg.t38
        if t38 is None:
            raise MediaNotAcceptable("image stream without T.38 parameters")
        limits: dict[str, int] = {}
        if neg.remote_t38 is not None and neg.remote_t38.max_datagram is not None:
            limits["max_datagram"] = neg.remote_t38.max_datagram
        if neg.remote_t38 is not None and neg.remote_t38.max_buffer is not None:
            limits["max_buffer"] = neg.remote_t38.max_buffer
        return T38Params(
            version=t38.version,
            max_bit_rate=t38.max_bit_rate,
            rate_management=t38.rate_management.value,
            udp_ec=t38.udp_ec.value,
            redundancy=redundancy,
            fill_bit_removal=t38.fill_bit_removal,
            transcoding_mmr=t38.transcoding_mmr,
            transcoding_jbig=t38.transcoding_jbig,
            **limits,
        )
    except ValueError as exc:
        if isinstance(exc, MediaNotAcceptable):
            raise
        raise MediaNotAcceptable(f"the agreed media cannot run: {exc}") from exc
