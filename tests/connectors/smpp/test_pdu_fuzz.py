"""The PDU codec under fuzz: whatever an SMSC sends, decoding and framing raise nothing
but :class:`PduError` (which the session answers with a generic_nack), and what they
accept is consistent with the bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.smpp import pdu as P
from tests.fuzzing import fuzz

COMMAND_IDS = [*sorted(P.COMMAND_NAMES), 0x00000777, 0x80000777, 0xFFFFFFFF]
TAGS = [
    P.TAG_RECEIPTED_MESSAGE_ID,
    P.TAG_SAR_MSG_REF_NUM,
    P.TAG_SAR_TOTAL_SEGMENTS,
    P.TAG_SAR_SEGMENT_SEQNUM,
    P.TAG_SC_INTERFACE_VERSION,
    P.TAG_NETWORK_ERROR_CODE,
    P.TAG_MESSAGE_PAYLOAD,
    P.TAG_MESSAGE_STATE,
]
SM_FIELDS = {
    "service_type": "",
    "source_addr_ton": 1,
    "source_addr_npi": 1,
    "source_addr": "4917612345678",
    "dest_addr_ton": 1,
    "dest_addr_npi": 1,
    "destination_addr": "4915112345671",
    "data_coding": 0,
    "short_message": b"hello",
}


def tlvs() -> st.SearchStrategy[bytes]:
    """A run of TLVs: known tags or any, honest lengths or lying ones."""
    one = st.builds(
        lambda tag, value, lie: struct.pack(">HH", tag, len(value) if lie is None else lie) + value,
        st.sampled_from(TAGS) | st.integers(0, 0xFFFF),
        st.binary(max_size=40),
        st.none() | st.integers(0, 0xFFFF),
    )
    return st.lists(one, max_size=5).map(b"".join)


def frames() -> st.SearchStrategy[bytes]:
    """Whole frames (command_length right or wrong) of any command with any body."""
    return st.builds(
        lambda cid, status, seq, body, length: (
            struct.pack(">IIII", 16 + len(body) if length is None else length, cid, status, seq)
            + body
        ),
        st.sampled_from(COMMAND_IDS) | st.integers(0, 0xFFFFFFFF),
        st.sampled_from([0, P.ESME_RTHROTTLED]) | st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.binary(max_size=300) | st.builds(bytes.__add__, st.binary(max_size=120), tlvs()),
        st.none() | st.integers(0, 0xFFFFFFFF),
    )


def mutated_deliver_sm() -> st.SearchStrategy[bytes]:
    """A valid deliver_sm with TLVs, then bytes overwritten, cut out or added (length fixed)."""

    def mutate(frame: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
        buf = bytearray(frame)
        for kind, pos, data in edits:
            pos %= len(buf) + 1
            if kind == 0:
                buf[pos : pos + len(data)] = data
            elif kind == 1:
                del buf[pos : pos + 1 + len(data)]
            else:
                buf[pos:pos] = data
        buf[0:4] = struct.pack(">I", len(buf))
        return bytes(buf)

    base = st.builds(
        lambda sm, extra: P.encode(P.DELIVER_SM, 7, {**SM_FIELDS, "short_message": sm}, tlvs=extra),
        st.binary(max_size=254),
        tlvs(),
    )
    edit = st.tuples(st.integers(0, 2), st.integers(0, 400), st.binary(min_size=1, max_size=4))
    return st.builds(mutate, base, st.lists(edit, min_size=1, max_size=4)).filter(
        lambda f: len(f) >= 4
    )


def check_decoded(pdu: P.Pdu, frame: bytes) -> None:
    """What decode returns is made of the frame's bytes."""
    _, cid, status, seq = struct.unpack_from(">IIII", frame)
    assert (pdu.command_id, pdu.status, pdu.seq) == (cid, status, seq)
    for name, value in pdu.fields.items():
        assert isinstance(value, str | int | bytes), name
    for tag, value in pdu.tlvs.items():
        assert 0 <= tag <= 0xFFFF and value in frame
        P.tlv_int(pdu, tag)
        P.tlv_cstr(pdu, tag)


@fuzz(600)
@given(frames() | mutated_deliver_sm())
def test_decode_raises_only_pdu_error(frame: bytes) -> None:
    try:
        pdu = P.decode(frame)
    except P.PduError as exc:
        assert 0 <= exc.status <= 0xFFFFFFFF and str(exc)
        return
    check_decoded(pdu, frame)
    repr(pdu)


@fuzz(300)
@given(
    st.lists(frames() | mutated_deliver_sm() | st.binary(max_size=40), max_size=6),
    st.lists(st.integers(1, 200), min_size=1, max_size=20),
)
def test_framer_cuts_any_stream_or_raises_pdu_error(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    framer = P.Framer()
    got: list[bytes] = []
    pos = 0
    for n in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        if pos >= len(stream):
            break
        try:
            got += framer.feed(stream[pos : pos + n])
        except P.PduError as exc:
            assert exc.status == P.ESME_RINVCMDLEN
            return
        pos += n
    # Every frame is a prefix of what is left of the stream, of the length it announces.
    joined = b"".join(got)
    assert stream.startswith(joined)
    for frame in got:
        assert P.HEADER_LEN <= struct.unpack_from(">I", frame)[0] == len(frame) <= P.MAX_PDU


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        # A submit_sm_resp whose message_id fills the frame without a NUL.
        (P.header(P.SUBMIT_SM_RESP, 0, 1, 3) + b"abc", P.ESME_RINVPARLEN),
        # A deliver_sm whose TLV header is cut after two octets.
        (P.encode(P.DELIVER_SM, 1, SM_FIELDS, tlvs=b"\x04\x24"), P.ESME_RINVOPTPARSTREAM),
        # A deliver_sm whose short_message is cut (sm_length 5, 2 octets left).
        (P.encode(P.DELIVER_SM, 1, SM_FIELDS)[:-3], P.ESME_RINVCMDLEN),
    ],
)
def test_edge_frames_are_refused_with_their_status(frame: bytes, status: int) -> None:
    with pytest.raises(P.PduError) as err:
        P.decode(frame)
    assert err.value.status == status and err.value.seq == 1


def test_an_error_response_without_a_body_is_read() -> None:
    frame = P.header(P.BIND_TRANSCEIVER_RESP, P.ESME_RBINDFAIL, 1, 0)
    check_decoded(P.decode(frame), frame)
