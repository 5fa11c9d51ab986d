"""SDP for fax calls: the text format (`wire`) and the audio / T.38 streams with their
offer/answer rules (`media`). Import from here."""

from fax.t38.sdp.media import (
    CODECS,
    PCMA,
    PCMU,
    TELEPHONE_EVENT_PT,
    AudioCodec,
    LocalMedia,
    MediaKind,
    Negotiated,
    RateManagement,
    SdpOrigin,
    T38Attributes,
    UdpEC,
    build_answer,
    build_offer,
    negotiate,
    offered_kinds,
)
from fax.t38.sdp.wire import (
    MAX_SDP_SIZE,
    Attribute,
    Connection,
    Media,
    Origin,
    SessionDescription,
)

__all__ = [
    "CODECS",
    "MAX_SDP_SIZE",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT_PT",
    "Attribute",
    "AudioCodec",
    "Connection",
    "LocalMedia",
    "Media",
    "MediaKind",
    "Negotiated",
    "Origin",
    "RateManagement",
    "SdpOrigin",
    "SessionDescription",
    "T38Attributes",
    "UdpEC",
    "build_answer",
    "build_offer",
    "negotiate",
    "offered_kinds",
]
